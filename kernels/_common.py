"""Launcher helpers shared by every kernel family: output allocation (poisoned with
NaN under test, so an element a kernel forgets to write can never pass), and the
interpreter switch that selects the one fixed tile config."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os

import numpy as np
import torch
import triton.language as tl

from fastgan._dtypes import accumulator as accumulator_dtype  # noqa: F401  (re-exported)

_poison = os.environ.get("FASTGAN_POISON_OUTPUTS", "0") == "1"


# Triton decides whether a kernel runs in its interpreter when the kernel is decorated
# (@triton.jit reads TRITON_INTERPRET), that is when a kernels module is imported, right
# after this one: read here once, so every launch decision agrees with the kernels'
# mode for good, and no launch pays an environment lookup (microseconds each).
_INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter."""
    return _INTERPRETING


# While `emulating()` is active: (Triton target key, number of SMs) of the GPU whose
# launch decisions are reproduced on tensors of any device.
_emulated: tuple[str, int] | None = None


def emulated_gpu() -> tuple[str, int] | None:
    return _emulated


@contextlib.contextmanager
def emulating(target: str = "cuda_90", sms: int = 132):
    """Choose launch configs (tiles, split-K counts, dot precision) as on a GPU of
    Triton target `target` (cuda_90, cuda_80) with `sms` multiprocessors, whatever
    device the tensors are on: the static kernel report, launch counts and the
    host-overhead benchmark reproduce a GPU step's launches without a GPU."""
    global _emulated
    before, _emulated = _emulated, (target, int(sms))
    try:
        yield
    finally:
        _emulated = before


@contextlib.contextmanager
def poison_outputs(enabled: bool = True):
    """Fill every kernel output with NaN before the kernel writes it (tests)."""
    global _poison
    before, _poison = _poison, enabled
    try:
        yield
    finally:
        _poison = before


class LaunchConfigs:
    """A kernel family's launch config: one for the GPU, one for the interpreter (which
    runs programs one after another, so it wants few large tiles); tests replace fields
    with configured() to reach every code path."""

    def __init__(self, gpu, interpreter):
        self.gpu, self.interpreter, self._override = gpu, interpreter, None

    def current(self):
        if self._override is not None:
            return self._override
        return self.interpreter if interpreting() and _emulated is None else self.gpu

    def overridden(self):
        """The config configured() put in force, else None. A launch plan cached under
        one config must not serve another: plan keys include this (the rest of
        current()'s choice, interpreter and emulated GPU, is in every plan's key)."""
        return self._override

    @contextlib.contextmanager
    def configured(self, **changes):
        """Run with some config fields replaced."""
        before = self._override
        self._override = dataclasses.replace(self.current(), **changes)
        try:
            yield self._override
        finally:
            self._override = before


@functools.lru_cache(maxsize=4096)
def _strides(shape: tuple, memory_format) -> tuple:
    """The strides torch.empty(shape, memory_format=memory_format) would give."""
    return torch.empty(shape, device="meta", memory_format=memory_format).stride()


def output_spec(shape, memory_format=torch.contiguous_format) -> tuple:
    """(shape, strides) of an output, worked out once when a launch is planned:
    new_strided then allocates it without looking the strides up per call."""
    shape = tuple(shape)
    return shape, _strides(shape, memory_format)


def new_strided(spec: tuple, dtype, device) -> torch.Tensor:
    """new_output for a (shape, strides) spec from output_spec: the launchers' per-call
    allocation, one PyTorch call (every launch allocates its outputs)."""
    out = torch.empty_strided(spec[0], spec[1], dtype=dtype, device=device)
    if _poison:
        out.fill_(float("nan"))
    return out


def new_output(shape, dtype, device, memory_format=torch.contiguous_format) -> torch.Tensor:
    # empty_strided with the strides looked up: the same tensor as torch.empty with a
    # memory format, for about two thirds of its host time (every launch allocates).
    try:
        strides = _strides(shape, memory_format)
    except TypeError:  # a list
        strides = _strides(tuple(shape), memory_format)
    return new_strided((shape, strides), dtype, device)


def accumulator_type(dtype: torch.dtype):
    """The Triton accumulator dtype for operands of `dtype` (float64 stays float64)."""
    return tl.float64 if accumulator_dtype(dtype) == torch.float64 else tl.float32


def is_dense(t: torch.Tensor) -> bool:
    """True if t's elements fill exactly numel consecutive slots from its data pointer
    (non-overlapping and dense, in any dimension order)."""
    if t.is_contiguous():  # the common case, without the sort below
        return True
    expected = 1
    for size, stride in sorted(((s, st) for s, st in zip(t.shape, t.stride()) if s != 1), key=lambda p: p[1]):
        if stride != expected:
            return False
        expected *= size
    return True


def new_output_like(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An output shaped and strided like t (torch.empty_like: t's strides when t is
    dense, else dense strides in t's dimension order), poisoned like new_output."""
    out = torch.empty_like(t, dtype=dtype)
    if _poison:
        out.fill_(float("nan"))
    return out


@functools.lru_cache(maxsize=256)
def split_float32(value: float) -> tuple[float, float]:
    """value = hi + lo with hi and lo float32 numbers: a Python float reaches a compiled
    kernel as float32, so a float64 kernel that needs a constant (eps, a label) to more
    than 24 bits takes it as this pair and adds (x + hi) + lo."""
    hi = float(np.float32(value))
    return hi, float(np.float32(value - hi))
