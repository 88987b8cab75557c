"""Offline quality metrics.

Samples of image GANs, in the feature space of a classifier trained on real data:
    clf = train_classifier(real_images, real_labels)
    score_samples(clf, real_images, fake_images, fake_conditions)
        -> accuracy, fd, precision, recall, density, coverage
2-D toys (VEEGAN/PacGAN protocol): ring_coverage(samples), grid_coverage(samples).
Recommendation: ranking_metrics(scores, held_out, exclude=train, ks=(5, 20)).
Over seeds, for any sampler callable: evaluate_conditional(sample, clf, real, labels),
evaluate_modes(sample, "ring" | "grid"), evaluate_modes_conditional(sample, "ring" | "grid").
"""

from .classifier import FeatureClassifier, train_classifier
from .evaluate import evaluate_conditional, evaluate_modes, evaluate_modes_conditional, format_summary
from .feature_space import conditional_accuracy, density_coverage, frechet_distance, knn_radii, precision_recall
from .modes import (
    GRID_SIGMA,
    PROTOCOL_SAMPLES,
    RING_SIGMA,
    ModeCoverage,
    grid_coverage,
    grid_modes,
    mode_coverage,
    nearest_mode,
    ring_coverage,
    ring_modes,
)
from .ranking import ranking_metrics, ranking_metrics_per_user
from .sample_quality import score_samples

__all__ = [
    "FeatureClassifier",
    "GRID_SIGMA",
    "ModeCoverage",
    "PROTOCOL_SAMPLES",
    "RING_SIGMA",
    "conditional_accuracy",
    "density_coverage",
    "evaluate_conditional",
    "evaluate_modes",
    "evaluate_modes_conditional",
    "format_summary",
    "frechet_distance",
    "grid_coverage",
    "grid_modes",
    "knn_radii",
    "mode_coverage",
    "nearest_mode",
    "precision_recall",
    "ranking_metrics",
    "ranking_metrics_per_user",
    "ring_coverage",
    "ring_modes",
    "score_samples",
    "train_classifier",
]
