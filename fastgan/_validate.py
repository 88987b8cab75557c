"""Argument checks shared by fastgan.functional and fastgan.nn.

Every check raises before any kernel runs: TypeError for a wrong type or dtype,
ValueError for a wrong value or shape, each naming the argument and what was expected.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ._dtypes import SUPPORTED, SUPPORTED_NAMES
from .reference.activations import ACTIVATIONS, lookup
from .reference.loss import LOSS_KINDS


def tensor(name: str, t, *, ndim: int | Sequence[int] | None = None, optional: bool = False):
    if t is None and optional:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in SUPPORTED:
        raise TypeError(f"{name} must be {SUPPORTED_NAMES}, got {t.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.dim() not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be a {want} tensor, got {t.dim()}-D with shape {tuple(t.shape)}")
    return t


def same_device(**named) -> None:
    items = [(k, v) for k, v in named.items() if v is not None]
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}: move them to one device")


def same_dtype(**named) -> None:
    items = [(k, v) for k, v in named.items() if v is not None]
    first_name, first = items[0]
    if torch.is_autocast_enabled(first.device.type):
        # Under autocast the tensors are cast to one dtype before the op (see autocast
        # below): a bf16 activation meeting a float32 weight is the normal case.
        return
    for name, t in items[1:]:
        if t.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but {first_name} has {first.dtype}: they must match")


def pair(name: str, value, *, minimum: int) -> list[int]:
    """An int or a pair of ints, each >= minimum, as a list of two ints."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        values = [value, value]
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        values = list(value)
    elif isinstance(value, (tuple, list)) and len(value) == 1 and isinstance(value[0], int):
        values = [value[0], value[0]]
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in values):
        kind = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return values


def unsupported(name: str, value, default=1) -> None:
    """groups and dilation: only the default is supported, never silently ignored."""
    ok = value == default or (isinstance(value, (tuple, list)) and all(v == default for v in value))
    if not ok:
        raise ValueError(f"{name}={value!r} is not supported by fastgan (only {name}={default})")


def choice(name: str, value, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def finite_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def activation(act, alpha, gain, clamp) -> tuple[str, float, float, float | None]:
    """Resolve (act, alpha, gain, clamp) to the plain values the ops take."""
    choice("act", act, ACTIVATIONS)
    row = lookup(act)
    alpha = row.default_alpha if alpha is None else finite_number("alpha", alpha)
    if alpha < 0:
        # The backward reads the derivative off the output's sign, which needs alpha >= 0.
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    gain = row.default_gain if gain is None else finite_number("gain", gain)
    if gain <= 0:
        raise ValueError(f"gain must be positive, got {gain}")
    if clamp is not None:
        clamp = finite_number("clamp", clamp)
        if clamp <= 0:
            raise ValueError(f"clamp must be positive (or None for no clamp), got {clamp}")
    return act, alpha, gain, clamp


def real_label(kind: str, value) -> float:
    """The real label of a checked loss `kind`: a finite number, and the kind's default
    when the kind takes no labels (fastgan.reference.loss.LOSS_KINDS)."""
    value = finite_number("real_label", value)
    row = LOSS_KINDS[kind]
    if not row.uses_labels and value != row.default_real_label:
        raise ValueError(
            f"real_label must be {row.default_real_label} for kind={kind!r} (label smoothing needs a target), got {value}"
        )
    return value


def autocast(*tensors):
    """Cast floating tensors to the autocast dtype when autocast is on for their device."""
    first = next(t for t in tensors if t is not None)
    device_type = first.device.type
    if not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(None if t is None else t.to(dtype) for t in tensors)
