"""The Triton activation table (kernels/activation.py) against the reference table,
forward and derivative, in float32 and float64, through a minimal elementwise kernel."""

import math

import pytest
import torch
import triton
import triton.language as tl

from fastgan.kernels import activation as KA
from fastgan.kernels._common import new_output, poison_outputs
from fastgan.reference import activations as A
from utils import assert_close


@triton.jit
def _table_kernel(z_ptr, y_ptr, d_ptr, n, ACT: tl.constexpr, alpha, gain, clamp, HAS_CLAMP: tl.constexpr,
                  BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    z = tl.load(z_ptr + offs, mask=mask, other=0.0)
    y = KA.apply_act(z, ACT, alpha, gain, clamp, HAS_CLAMP)
    if KA.saves_preactivation(ACT):
        s = z
    else:
        s = y
    d = KA.act_derivative(s, ACT, alpha, gain, clamp, HAS_CLAMP)
    tl.store(y_ptr + offs, y, mask=mask)
    tl.store(d_ptr + offs, d, mask=mask)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("act", A.ACTIVATIONS)
@pytest.mark.parametrize("gain,clamp", [(1.0, None), (1.7, None), (0.6, 0.5)])
def test_triton_table_matches_reference(dtype, act, gain, clamp):
    gen = torch.Generator().manual_seed(7)
    z = torch.cat([torch.randn(200, generator=gen, dtype=torch.float64) * 4, torch.tensor([-80.0, 80.0, 1e-6, -1e-6])])
    z = z.to(dtype)
    with poison_outputs():
        y, d = new_output(z.shape, dtype, "cpu"), new_output(z.shape, dtype, "cpu")
        _table_kernel[(triton.cdiv(z.numel(), 64),)](
            z, y, d, z.numel(), act, 0.2, gain, 0.0 if clamp is None else clamp, clamp is not None, BLOCK=64
        )
    z64 = z.double()
    y_ref = A.bias_act(z64, act, 0.2, gain, clamp)
    s_ref = z64 if A.needs_preactivation(act) else y_ref
    d_ref = A.derivative(s_ref, act, 0.2, gain, clamp)
    assert_close(y, y_ref, dtype, f"{act} forward")
    assert_close(d, d_ref, dtype, f"{act} derivative")


def _edge_values(dtype, gain, clamp):
    """The kink (+-0), non-finite inputs, and inputs whose output lands exactly on
    +-clamp (z = clamp / gain, exact for the gains used) or crosses it."""
    values = [-2.0, -0.5, -0.0, 0.0, 0.5, 2.0, math.nan, math.inf, -math.inf, 1e-30, -1e-30]
    if clamp is not None:
        values += [clamp / gain, -clamp / gain, 4 * clamp / gain, -4 * clamp / gain]
    return torch.tensor(values, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("act", A.ACTIVATIONS)
@pytest.mark.parametrize("alpha,gain,clamp", [(0.2, 1.0, None), (0.0, 2.0, None), (0.2, 2.0, 0.5)])
def test_triton_table_matches_reference_at_kinks_and_nonfinite(dtype, act, alpha, gain, clamp):
    """Value for value, NaN for NaN: relu's gradient passes at a NaN input (as torch's),
    an infinite input gives a finite derivative (0 * inf never enters), a NaN stays NaN
    through the clamp."""
    z = _edge_values(dtype, gain, clamp)
    with poison_outputs():
        y, d = new_output(z.shape, dtype, "cpu"), new_output(z.shape, dtype, "cpu")
        _table_kernel[(1,)](z, y, d, z.numel(), act, alpha, gain, 0.0 if clamp is None else clamp,
                            clamp is not None, BLOCK=16)
    y_ref = A.bias_act(z, act, alpha, gain, clamp)
    d_ref = A.derivative(z if A.needs_preactivation(act) else y_ref, act, alpha, gain, clamp)
    torch.testing.assert_close(y, y_ref, equal_nan=True, msg=lambda m: f"{act} forward: {m}")
    torch.testing.assert_close(d, d_ref, equal_nan=True, msg=lambda m: f"{act} derivative: {m}")
