"""Mode coverage of 2-D samples, the VEEGAN/PacGAN protocol.

Ring: 8 Gaussians evenly spaced on the circle of radius 1, sigma 0.01.
Grid: 25 Gaussians at {-4, -2, 0, 2, 4}^2, sigma 0.05.
Score 2,500 samples: each sample goes to its nearest mode and is *high quality* when
it lies within 3 sigma of it; a mode is *covered* when at least one high-quality sample
lands on it; the *reverse KL* is KL(q || uniform) of the histogram q of high-quality
samples over the modes (0 for a perfectly balanced sampler, log(modes) when all land
on one mode, inf when none is high quality). A perfect sampler scores at most
1 - exp(-9/2) = 98.9% high quality (the 2-D Gaussian mass within 3 sigma).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import _inputs as I

RING_SIGMA = 0.01
GRID_SIGMA = 0.05
PROTOCOL_SAMPLES = 2500


def ring_modes(n: int = 8, radius: float = 1.0) -> torch.Tensor:
    """[n, 2] centres evenly spaced on a circle, the first at (radius, 0)."""
    angles = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    return radius * torch.stack([angles.cos(), angles.sin()], 1)


def grid_modes(values=(-4.0, -2.0, 0.0, 2.0, 4.0)) -> torch.Tensor:
    """[len(values)^2, 2] centres of the grid values x values."""
    v = torch.tensor(values, dtype=torch.float64)
    return torch.cartesian_prod(v, v)


@dataclass(frozen=True)
class ModeCoverage:
    modes_covered: int
    num_modes: int
    high_quality: float  # fraction of all samples within 3 sigma of their nearest mode
    reverse_kl: float  # KL(histogram of high-quality samples || uniform over modes)
    counts: tuple[int, ...]  # high-quality samples per mode

    def as_dict(self) -> dict[str, float]:
        return {
            "modes": float(self.modes_covered),
            "num_modes": float(self.num_modes),
            "high_quality": self.high_quality,
            "reverse_kl": self.reverse_kl,
        }


def nearest_mode(samples, modes, sigma: float, *, threshold: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of each sample's nearest mode [N], whether it lies within threshold*sigma
    of it [N]): the assignment every score below is built on."""
    modes = I.points("modes", modes)
    samples = I.points("samples", samples, dim=modes.shape[1])
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if not (isinstance(threshold, (int, float)) and threshold > 0):
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    distance, nearest = torch.cdist(samples, modes).min(1)
    return nearest, distance < threshold * sigma


def mode_coverage(samples, modes, sigma: float, *, threshold: float = 3.0) -> ModeCoverage:
    """Score samples [N, 2] (or [N, D]) against mode centres [M, D] of std sigma."""
    modes = I.points("modes", modes)
    nearest, good = nearest_mode(samples, modes, sigma, threshold=threshold)
    counts = torch.bincount(nearest[good], minlength=modes.shape[0])
    total = int(counts.sum())
    if total == 0:
        reverse_kl = math.inf
    else:
        q = counts[counts > 0].double() / total
        reverse_kl = float((q * (q * modes.shape[0]).log()).sum())
    return ModeCoverage(
        modes_covered=int((counts > 0).sum()),
        num_modes=modes.shape[0],
        high_quality=float(good.double().mean()),
        reverse_kl=max(reverse_kl, 0.0),
        counts=tuple(int(c) for c in counts),
    )


def ring_coverage(samples) -> ModeCoverage:
    return mode_coverage(samples, ring_modes(), RING_SIGMA)


def grid_coverage(samples) -> ModeCoverage:
    return mode_coverage(samples, grid_modes(), GRID_SIGMA)
