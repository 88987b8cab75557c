"""Score a sampler over several seeds: the engine of `fastgan eval`.

A sampler is any callable; `fastgan eval --ckpt PATH` (phase 2, once fastgan.models and
fastgan.train land) builds one from a checkpoint's generator:
- conditional image sampler: sample(conditions [N] int64) -> images [N, ...]
- 2-D toy sampler:           sample(n) -> points [n, 2]
- conditional 2-D sampler:   sample(mode indices [N] int64) -> points [N, 2]
Each seed reseeds torch before sampling; results are mean and std (ddof=1) over seeds.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from . import _inputs as I
from .classifier import FeatureClassifier
from .feature_space import conditional_accuracy, density_coverage, frechet_distance, precision_recall
from .modes import GRID_SIGMA, PROTOCOL_SAMPLES, RING_SIGMA, grid_modes, mode_coverage, nearest_mode, ring_modes

Summary = dict[str, tuple[float, float]]


def _mean_std(rows: list[dict[str, float]]) -> Summary:
    out = {}
    for name in rows[0]:
        values = np.array([row[name] for row in rows], dtype=np.float64)
        if len(values) < 2 or (values == values[0]).all():  # also an inf reverse KL on every seed
            out[name] = (float(values.mean()), 0.0)
            continue
        with np.errstate(invalid="ignore"):  # inf on some seeds only: the std is nan
            out[name] = (float(values.mean()), float(values.std(ddof=1)))
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


def _mixture(kind: str) -> tuple[torch.Tensor, float]:
    if kind not in ("ring", "grid"):
        raise ValueError(f"kind must be 'ring' or 'grid', got {kind!r}")
    return (ring_modes(), RING_SIGMA) if kind == "ring" else (grid_modes(), GRID_SIGMA)


def _sample_count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return n


@torch.no_grad()
def evaluate_modes(sample: Callable[[int], torch.Tensor], kind: str, *, seeds: Sequence[int] = (0, 1, 2),
                   n: int = PROTOCOL_SAMPLES) -> Summary:
    """modes, high_quality, reverse_kl of `kind` ("ring" or "grid"), mean and std over seeds."""
    modes, sigma = _mixture(kind)
    n = _sample_count(n)
    rows = []
    for seed in _seeds(seeds):
        torch.manual_seed(seed)
        result = mode_coverage(sample(n), modes, sigma)
        rows.append({"modes": float(result.modes_covered), "high_quality": result.high_quality,
                     "reverse_kl": result.reverse_kl})
    return _mean_std(rows)


@torch.no_grad()
def evaluate_modes_conditional(sample: Callable[[torch.Tensor], torch.Tensor], kind: str, *,
                               seeds: Sequence[int] = (0, 1, 2), n: int = PROTOCOL_SAMPLES) -> dict:
    """Scores of a sampler conditioned on the mode index (mode i is condition i, the
    labels of fastgan.data's ring and grid), {"overall": ..., "per_class": {i: ...}}.

    Per seed the sampler gets n conditions cycling over the modes (as even a share of
    each as n allows). Overall: modes, high_quality, reverse_kl of all n samples (the
    unconditional protocol) and accuracy, the share of samples that are high quality
    on their own condition's mode. Per condition: accuracy and high_quality (within
    3 sigma of any mode).
    """
    if not callable(sample):
        raise TypeError(f"sample must be callable (mode indices -> points), got {type(sample).__name__}")
    modes, sigma = _mixture(kind)
    n = _sample_count(n)
    conditions = torch.arange(n) % modes.shape[0]
    per_seed, per_class_seed = [], {c: [] for c in range(modes.shape[0])}
    for seed in _seeds(seeds):
        torch.manual_seed(seed)
        points = sample(conditions.clone())
        if not isinstance(points, torch.Tensor) or points.shape[0] != n:
            raise ValueError(f"sample returned {getattr(points, 'shape', type(points).__name__)}; "
                             f"expected a tensor with {n} samples")
        points = points.detach().cpu()
        result = mode_coverage(points, modes, sigma)
        nearest, good = nearest_mode(points, modes, sigma)
        on_target = good & (nearest == conditions)
        per_seed.append({"modes": float(result.modes_covered), "high_quality": result.high_quality,
                         "reverse_kl": result.reverse_kl, "accuracy": float(on_target.double().mean())})
        for c, rows in per_class_seed.items():
            mine = conditions == c
            rows.append({"accuracy": float(on_target[mine].double().mean()),
                         "high_quality": float(good[mine].double().mean())})
    return {"overall": _mean_std(per_seed), "per_class": {c: _mean_std(rows) for c, rows in per_class_seed.items()}}


def format_summary(summary: Summary, *, name: str = "") -> str:
    """One markdown table row per summary: | name | mean ± std | ... |"""
    return f"| {name} | " + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in summary.values()) + " |"
