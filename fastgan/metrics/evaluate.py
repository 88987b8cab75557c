"""Score a sampler over several seeds: the engine of `fastgan eval`.

A sampler is any callable; `fastgan eval --ckpt PATH` (phase 2, once fastgan.models and
fastgan.train land) builds one from a checkpoint's generator:
- conditional image sampler: sample(conditions [N] int64) -> images [N, ...]
- 2-D toy sampler:           sample(n) -> points [n, 2]
Each seed reseeds torch before sampling; results are mean and std (ddof=1) over seeds.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from . import _inputs as I
from .classifier import FeatureClassifier
from .feature_space import conditional_accuracy, density_coverage, frechet_distance, precision_recall
from .modes import GRID_SIGMA, PROTOCOL_SAMPLES, RING_SIGMA, grid_modes, mode_coverage, ring_modes

Summary = dict[str, tuple[float, float]]


def _mean_std(rows: list[dict[str, float]]) -> Summary:
    out = {}
    for name in rows[0]:
        values = np.array([row[name] for row in rows], dtype=np.float64)
        out[name] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)
    return out


def _seeds(seeds) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds!r}")
    return seeds


@torch.no_grad()
def evaluate_conditional(
    sample: Callable[[torch.Tensor], torch.Tensor],
    classifier: FeatureClassifier,
    real_images: torch.Tensor,
    real_labels,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    k_precision_recall: int = 3,
    k_density_coverage: int = 5,
) -> dict[str, Summary | dict[int, Summary]]:
    """{"overall": metric -> (mean, std), "per_class": class -> metric -> (mean, std)}.

    Per seed, the sampler draws as many samples of each class as `real_images` (the
    held-out real set) has, so every set comparison is between equal sizes. Overall:
    accuracy, fd, precision, recall, density, coverage. Per class: accuracy, and
    precision/recall/coverage against that class's real samples (k shrinks for classes
    too small for it).
    """
    if not callable(sample):
        raise TypeError(f"sample must be callable (conditions -> images), got {type(sample).__name__}")
    labels = I.labels("real_labels", real_labels, real_images.shape[0])
    classes = sorted(int(c) for c in labels.unique())
    real_features, _ = classifier.embed(real_images)
    per_seed, per_class_seed = [], {c: [] for c in classes}
    for seed in _seeds(seeds):
        torch.manual_seed(seed)
        fake = sample(labels.clone())
        if not isinstance(fake, torch.Tensor) or fake.shape[0] != labels.shape[0]:
            raise ValueError(f"sample returned {getattr(fake, 'shape', type(fake).__name__)}; "
                             f"expected a tensor with {labels.shape[0]} samples")
        features, predicted = classifier.embed(fake.detach().cpu())
        row = {"accuracy": conditional_accuracy(predicted, labels), "fd": frechet_distance(real_features, features)}
        row["precision"], row["recall"] = precision_recall(real_features, features, k_precision_recall)
        row["density"], row["coverage"] = density_coverage(real_features, features, k_density_coverage)
        per_seed.append(row)
        for c in classes:
            mine = labels == c
            k_pr = min(k_precision_recall, int(mine.sum()) - 1)
            k_dc = min(k_density_coverage, int(mine.sum()) - 1)
            class_row = {"accuracy": conditional_accuracy(predicted[mine], labels[mine])}
            if k_pr >= 1:
                class_row["precision"], class_row["recall"] = precision_recall(real_features[mine], features[mine], k_pr)
                class_row["coverage"] = density_coverage(real_features[mine], features[mine], k_dc)[1]
            per_class_seed[c].append(class_row)
    return {"overall": _mean_std(per_seed), "per_class": {c: _mean_std(rows) for c, rows in per_class_seed.items()}}


@torch.no_grad()
def evaluate_modes(sample: Callable[[int], torch.Tensor], kind: str, *, seeds: Sequence[int] = (0, 1, 2),
                   n: int = PROTOCOL_SAMPLES) -> Summary:
    """modes, high_quality, reverse_kl of `kind` ("ring" or "grid"), mean and std over seeds."""
    if kind not in ("ring", "grid"):
        raise ValueError(f"kind must be 'ring' or 'grid', got {kind!r}")
    modes, sigma = (ring_modes(), RING_SIGMA) if kind == "ring" else (grid_modes(), GRID_SIGMA)
    rows = []
    for seed in _seeds(seeds):
        torch.manual_seed(seed)
        result = mode_coverage(sample(n), modes, sigma)
        rows.append({"modes": float(result.modes_covered), "high_quality": result.high_quality,
                     "reverse_kl": result.reverse_kl})
    return _mean_std(rows)


def format_summary(summary: Summary, *, name: str = "") -> str:
    """One markdown table row per summary: | name | mean ± std | ... |"""
    return f"| {name} | " + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in summary.values()) + " |"
