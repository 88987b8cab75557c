"""Small helpers shared by the reference op families."""

from __future__ import annotations

import torch

from .._dtypes import accumulator as compute_dtype  # the dtype every op computes in


def upcast(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to(compute_dtype(t.dtype))


def empty_channels_last(shape, dtype: torch.dtype, device) -> torch.Tensor:
    # One allocation rule for real and fake outputs, so their strides agree even where
    # channels_last is ambiguous (C == 1 or H == W == 1).
    return torch.empty(shape, dtype=dtype, device=device, memory_format=torch.channels_last)


def as_channels_last(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    out = empty_channels_last(t.shape, dtype, t.device)
    out.copy_(t)
    return out


def empty_like_nothing(t: torch.Tensor) -> torch.Tensor:
    """A fresh 0-element tensor, the op outputs' stand-in for 'not computed'."""
    return t.new_empty(0)
