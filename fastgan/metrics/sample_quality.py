"""One call that scores generated samples against real ones with a trained classifier:
the table `fastgan eval` prints for image GANs."""

from __future__ import annotations

import torch

from . import _inputs as I
from .classifier import FeatureClassifier
from .feature_space import conditional_accuracy, density_coverage, frechet_distance, precision_recall


def score_samples(
    classifier: FeatureClassifier,
    real: torch.Tensor,
    fake: torch.Tensor,
    fake_conditions=None,
    *,
    k_precision_recall: int = 3,
    k_density_coverage: int = 5,
) -> dict[str, float]:
    """Scores of `fake` against `real` in the classifier's feature space.

    Returns accuracy (when fake_conditions, the class each fake sample was generated
    for, is given), fd, precision, recall, density, coverage. Accuracy alone rewards a
    generator that draws one perfect sample per class: read it with recall/coverage.
    """
    if not isinstance(classifier, FeatureClassifier):
        raise TypeError(f"classifier must be a FeatureClassifier, got {type(classifier).__name__}")
    for name, x in (("real", real), ("fake", fake)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of images, got {type(x).__name__}")
    real_features, _ = classifier.embed(real)
    fake_features, fake_predicted = classifier.embed(fake)
    scores = {}
    if fake_conditions is not None:
        fake_conditions = I.labels("fake_conditions", fake_conditions, fake.shape[0])
        scores["accuracy"] = conditional_accuracy(fake_predicted, fake_conditions)
    scores["fd"] = frechet_distance(real_features, fake_features)
    scores["precision"], scores["recall"] = precision_recall(real_features, fake_features, k_precision_recall)
    scores["density"], scores["coverage"] = density_coverage(real_features, fake_features, k_density_coverage)
    return scores
