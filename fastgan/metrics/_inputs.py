"""Argument checks shared by the metrics: every score takes numpy arrays or torch
tensors and raises ValueError/TypeError naming the argument before computing anything."""

from __future__ import annotations

import numpy as np
import torch


def points(name: str, x, *, dim: int | None = None) -> torch.Tensor:
    """x as a float64 CPU tensor [N, D] of finite values (N >= 1)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not (x.dtype.is_floating_point or x.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [samples, features], got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} features per sample, got shape {tuple(x.shape)}")
    x = x.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or inf")
    return x


def labels(name: str, y, n: int) -> torch.Tensor:
    """y as an int64 CPU tensor of n class indices."""
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(y).__name__}")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with {n} entries, got shape {tuple(y.shape)}")
    return y.detach().to("cpu", torch.int64)


def neighbours(name: str, k, n: int) -> int:
    """k for a k-nearest-neighbour radius within a set of n points (needs k < n)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{name} must be a positive int, got {k!r}")
    if k >= n:
        raise ValueError(f"{name}={k} needs more than {k} points in each set, got {n}")
    return k
