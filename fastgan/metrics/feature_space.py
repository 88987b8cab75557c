"""Scores of generated samples against real ones in a feature space.

- Frechet distance between Gaussians fitted to the two sets (Heusel et al. 2017).
- Precision and recall of the k-nearest-neighbour manifolds (Kynkaanniemi et al. 2019,
  k=3): precision is the fraction of generated samples inside the real manifold (the
  union of balls around each real sample reaching its k-th nearest real neighbour),
  recall the fraction of real samples inside the generated manifold.
- Density and coverage (Naeem et al. 2020, k=5): density counts how many real balls
  hold each generated sample, divided by k (about 1 when the sets match, above 1 for
  samples packed where real data is dense); coverage is the fraction of real balls that
  hold at least one generated sample. Coverage does not inflate with outliers in the
  real set the way recall does.

All take [N, D] arrays or tensors (any device) and compute in float64 on the CPU.
"""

from __future__ import annotations

import torch

from . import _inputs as I

# Rows of the distance matrix computed at once: 2048 x 10^4 float64 is 160 MB.
_CHUNK = 2048


def frechet_distance(real, fake) -> float:
    """||mu_r - mu_f||^2 + tr(S_r) + tr(S_f) - 2 tr((S_r^1/2 S_f S_r^1/2)^1/2).

    The trace of the matrix square root is taken from the eigenvalues of the symmetric
    product S_r^1/2 S_f S_r^1/2 (the same spectrum as S_r S_f, but symmetric, so no
    complex parts appear as they can with a general sqrtm).
    """
    real = I.points("real", real)
    fake = I.points("fake", fake, dim=real.shape[1])
    for name, x in (("real", real), ("fake", fake)):
        if x.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 samples to estimate a covariance, got {x.shape[0]}")
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = torch.cov(real.T).reshape(real.shape[1], -1), torch.cov(fake.T).reshape(fake.shape[1], -1)
    root_r = _psd_sqrt(cov_r)
    cross = torch.linalg.eigvalsh(root_r @ cov_f @ root_r).clamp_min(0).sqrt().sum()
    fd = (mu_r - mu_f).square().sum() + cov_r.trace() + cov_f.trace() - 2 * cross
    return max(float(fd), 0.0)


def _psd_sqrt(cov: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(cov)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    out = torch.empty(x.shape[0], dtype=x.dtype)
    for start in range(0, x.shape[0], _CHUNK):
        d = torch.cdist(x[start:start + _CHUNK], x)
        # The k+1 smallest include the point itself (distance 0) first.
        out[start:start + _CHUNK] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def _balls_holding(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each query, how many balls B(centre_i, radius_i) contain it."""
    counts = torch.empty(queries.shape[0], dtype=torch.int64)
    for start in range(0, queries.shape[0], _CHUNK):
        d = torch.cdist(queries[start:start + _CHUNK], centres)
        counts[start:start + _CHUNK] = (d <= radii[None, :]).sum(1)
    return counts


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of the k-NN manifolds, each in [0, 1]."""
    real = I.points("real", real)
    fake = I.points("fake", fake, dim=real.shape[1])
    k = I.neighbours("k", k, min(real.shape[0], fake.shape[0]))
    precision = (_balls_holding(fake, real, knn_radii(real, k)) > 0).double().mean()
    recall = (_balls_holding(real, fake, knn_radii(fake, k)) > 0).double().mean()
    return float(precision), float(recall)


def density_coverage(real, fake, k: int = 5) -> tuple[float, float]:
    """(density, coverage); density is unbounded above, coverage in [0, 1]."""
    real = I.points("real", real)
    fake = I.points("fake", fake, dim=real.shape[1])
    k = I.neighbours("k", k, real.shape[0])
    radii = knn_radii(real, k)
    density = _balls_holding(fake, real, radii).double().sum() / (k * fake.shape[0])
    # A real ball is covered when its nearest generated sample lies inside it.
    nearest = torch.empty(real.shape[0], dtype=torch.float64)
    for start in range(0, real.shape[0], _CHUNK):
        nearest[start:start + _CHUNK] = torch.cdist(real[start:start + _CHUNK], fake).min(1).values
    coverage = (nearest <= radii).double().mean()
    return float(density), float(coverage)


def conditional_accuracy(predicted, conditions) -> float:
    """Fraction of samples whose predicted class equals the class they were generated for."""
    conditions = I.labels("conditions", conditions, _length("predicted", predicted))
    predicted = I.labels("predicted", predicted, conditions.shape[0])
    return float((predicted == conditions).double().mean())


def _length(name, x) -> int:
    if not hasattr(x, "shape") or len(x.shape) != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got {getattr(x, 'shape', type(x).__name__)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return int(x.shape[0])
