"""2-D mixtures of Gaussians used to measure mode coverage (VEEGAN / PacGAN protocol):
a ring of 8 (radius 1, sigma 0.01) and a grid of 25 (at {-4,-2,0,2,4}^2, sigma 0.05).

The modes and sigmas are fastgan.metrics.modes' own, so the data a model trains on and
the protocol that scores it cannot drift apart; mode i is the label of its points."""

from __future__ import annotations

import torch

from ..metrics import modes as _protocol
from .arrays import ArrayData


def ring_modes() -> torch.Tensor:
    return _protocol.ring_modes().float()


def grid_modes() -> torch.Tensor:
    return _protocol.grid_modes().float()


TOYS = {"ring": (ring_modes, _protocol.RING_SIGMA), "grid": (grid_modes, _protocol.GRID_SIGMA)}


def mixture(name: str, n: int = 25_000, seed: int = 0) -> ArrayData:
    """n points of the named mixture; each point's mode index is its condition (label)."""
    if name not in TOYS:
        raise ValueError(f"unknown toy data {name!r}; choose one of {tuple(TOYS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    modes_fn, sigma = TOYS[name]
    modes = modes_fn()
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(modes), (n,), generator=gen)
    x = modes[labels] + sigma * torch.randn(n, 2, generator=gen)
    return ArrayData(x, labels, cond_kind="label", cond_size=len(modes), name=name)


def ring(n: int = 25_000, seed: int = 0) -> ArrayData:
    return mixture("ring", n, seed)


def grid(n: int = 25_000, seed: int = 0) -> ArrayData:
    return mixture("grid", n, seed)
