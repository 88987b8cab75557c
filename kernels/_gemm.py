"""Pieces shared by the GEMM-shaped kernel families (conv.py, linear.py): program
ordering, the incoming-gradient operand with the activation derivative applied as it
is loaded, the bias + activation epilogue, the split-K partial-sum workspace (reduced
in the same launch, see _arrival.py), and the launcher checks every family makes
before a launch."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgan._dtypes import SUPPORTED as SUPPORTED_DTYPES
from fastgan.reference.activations import clamp_as_saved, needs_saved

from . import activation as KA
from ._arrival import scratch
from ._plans import cdiv
from ._common import accumulator_dtype, accumulator_type as acc_type  # noqa: F401  (acc_type re-exported)
# Offsets are computed in int32: every tensor a kernel touches must be addressable so.
MAX_ELEMENTS = 2**31 - 1


@triton.jit
def grouped_tile(pid, num_m, num_n, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) of program `pid`, walking GROUP_M row tiles per column tile so
    that programs running together share operand tiles in L2."""
    per_group = GROUP_M * num_n
    group = pid // per_group
    first_m = group * GROUP_M
    rows_in_group = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % rows_in_group
    pid_n = (pid % per_group) // rows_in_group
    return pid_m, pid_n


@triton.jit
def gradient_operand(g_ptr, s_ptr, g_off, s_off, mask, alpha, gain, clamp,
                     ACT: tl.constexpr, HAS_CLAMP: tl.constexpr, PROLOGUE: tl.constexpr,
                     ACC_DTYPE: tl.constexpr):
    """A tile of the gradient with respect to the pre-activation, dL/dz = dL/dy * act'(s),
    in the accumulator dtype. Without PROLOGUE (act linear, no clamp: act' is the
    constant gain, which the caller applies to its result instead) s is never read."""
    g = tl.load(g_ptr + g_off, mask=mask, other=0.0).to(ACC_DTYPE)
    if PROLOGUE:
        s = tl.load(s_ptr + s_off, mask=mask, other=0.0).to(ACC_DTYPE)
        g = g * KA.act_derivative(s, ACT, alpha, gain, clamp, HAS_CLAMP)
    return g


@triton.jit
def bias_act_store(acc, bias_ptr, s_bias, cols, col_ok, y_ptr, z_ptr, y_off, mask, alpha, gain, clamp, out_scale,
                   ACT: tl.constexpr, HAS_CLAMP: tl.constexpr, EPILOGUE: tl.constexpr,
                   HAS_BIAS: tl.constexpr, STORE_Z: tl.constexpr):
    """Store clamp(act(acc + bias) * gain) (EPILOGUE) or acc * out_scale, cast to y's
    dtype; with STORE_Z also the pre-activation acc + bias (z shares y's layout). The
    bias is read through its stride s_bias (an expanded bias has stride 0)."""
    z = acc * out_scale
    if HAS_BIAS:
        b = tl.load(bias_ptr + cols * s_bias, mask=col_ok, other=0.0).to(acc.dtype)
        z = z + b[None, :]
    if EPILOGUE:
        y = KA.apply_act(z, ACT, alpha, gain, clamp, HAS_CLAMP)
    else:
        y = z
    tl.store(y_ptr + y_off, y.to(y_ptr.dtype.element_ty), mask=mask)
    if STORE_Z:
        tl.store(z_ptr + y_off, z.to(z_ptr.dtype.element_ty), mask=mask)


def partials_buffer(rows: int, length: int, dtype: torch.dtype, device, offset: int = 0) -> torch.Tensor:
    """Workspace [rows, length] for split-K partial sums in the accumulator dtype of
    `dtype`: a view of the per-device scratch buffer (kernels/_arrival.py: written and
    read back within one launch, so nothing is allocated per launch) from element
    `offset`. A second workspace of the same launch and accumulator dtype starts at
    partials_end(...) of the first. Poisoned under test like every output: a slot no
    program writes would show up as NaN."""
    count = rows * length
    return scratch(offset + count, accumulator_dtype(dtype), device).as_strided((rows, length), (length, 1), offset)


def partials_end(rows: int, length: int, offset: int = 0) -> int:
    """Where the next workspace of a launch may start after partials_buffer(rows,
    length, offset=offset): its end, rounded up to 64 elements (256 bytes in float32:
    the next one's pointer stays as aligned as the buffer's)."""
    return cdiv(offset + rows * length, 64) * 64


def check_tensors(op: str, **tensors: torch.Tensor | None) -> torch.dtype:
    """The preconditions every launcher shares: same device and dtype, a dtype the
    kernels compute in, int32-addressable sizes. Returns the common dtype."""
    present = {k: t for k, t in tensors.items() if t is not None}
    first_name, first = next(iter(present.items()))
    for name, t in present.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
        if t.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"{op}: {name} has dtype {t.dtype}; the kernels take {SUPPORTED_DTYPES}")
        if t.dtype != first.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} but {first_name} has {first.dtype}")
        if t.device != first.device:
            raise ValueError(f"{op}: {name} is on {t.device} but {first_name} is on {first.device}")
        # The largest offset a kernel forms is sum((size - 1) * stride): it must fit int32.
        span = sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride()) if s > 0)
        if t.numel() > MAX_ELEMENTS or span > MAX_ELEMENTS:
            raise ValueError(
                f"{op}: {name} (shape {tuple(t.shape)}, strides {t.stride()}) spans more than "
                f"2**31 - 1 elements; the kernels address memory with int32 offsets"
            )
    return first.dtype


def check_shape(op: str, name: str, t: torch.Tensor, shape) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def saved_or_none(op: str, s, grad: torch.Tensor, act: str, clamp):
    """s when the activation derivative needs it (checked to be shaped like grad), else
    None: act linear without clamp has the constant derivative gain, and s is empty."""
    if not needs_saved(act, clamp):
        return None
    if s is None or tuple(s.shape) != tuple(grad.shape):
        got = None if s is None else tuple(s.shape)
        raise ValueError(
            f"{op}: act {act!r} (clamp {clamp}) needs the saved tensor s shaped like grad "
            f"{tuple(grad.shape)}, got {got}"
        )
    return s


def clamp_arg(clamp, act: str, s: torch.Tensor | None) -> float:
    """The clamp value a kernel receives (0.0 when there is none); in a backward launch
    (s given) rounded like the saved output (see reference.activations.clamp_as_saved)."""
    if clamp is None:
        return 0.0
    return float(clamp_as_saved(clamp, act, s.dtype) if s is not None else clamp)
