"""Launch plans cached per call signature, so that repeated training steps skip the
launchers' checks and planning.

A plan is everything a launcher derives from its arguments' metadata (shapes,
strides, dtypes, devices and plain parameters): the checks they pass, output shapes,
tile, grid, and the kernel's scalar and constexpr arguments. The key is that metadata
plus the global state that tile choice reads (an emulated GPU, forced tiles, TF32), so a
cached plan is exactly what planning again would produce. While tile lookups are being
recorded (_tiles.recording, the tuning script) nothing is cached: every launch plans.
"""

from __future__ import annotations

import threading

import torch

from . import _tiles
from ._common import emulated_gpu, interpreting

_plans: dict = {}
# Dynamic shapes could grow the table without bound: it is cleared when full.
MAX_PLANS = 4096


def meta(t: torch.Tensor | None):
    """What a plan may depend on of a tensor argument."""
    return None if t is None else (t.shape, t.stride(), t.dtype, t.device)


# The state, read once for a run of launches that nothing can change it in between
# (freeze / thaw around a layer chain's forward or backward); per thread.
_frozen = threading.local()


def freeze():
    """Read the global state once for the launches until thaw(token): a chain of layers
    plans many launches in a row, and reading the settings costs more than a lookup."""
    before = getattr(_frozen, "state", None)
    _frozen.state = _state()
    return before


def thaw(token) -> None:
    _frozen.state = token


def _state():
    frozen = getattr(_frozen, "state", None)
    if frozen is not None:
        return frozen
    if _tiles._recorded is not None:
        return None
    # The float32 dot precision of convs (cuDNN's setting) and linear layers (cuBLAS's):
    # every node tf32_allowed reads.
    return (emulated_gpu(), interpreting(), tuple(_tiles._forced.items()) if _tiles._forced else (),
            _tiles.precision_settings())


def get(key):
    """The plan cached for key (a tuple), or None."""
    state = _state()
    return None if state is None else _plans.get((key, state))


def put(key, plan):
    state = _state()
    if state is not None:
        if len(_plans) >= MAX_PLANS:
            _plans.clear()
        _plans[(key, state)] = plan
    return plan


def clear() -> None:
    _plans.clear()


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for host ints (triton.cdiv is a constexpr function, slow on the host)."""
    return -(-a // b)
