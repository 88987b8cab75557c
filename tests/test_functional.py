"""fastgan.functional on the reference backend against the plain torch.nn.functional
composition in float64: forward and gradients for input, weight and bias."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

import fastgan
from fastgan import functional as FG
from fastgan.reference.activations import lookup
from strategies import activation, conv_case, seeds
from utils import Rand, assert_close, clamp_ambiguous, derivative_bound, grads, leaf, magnitudes, randn

DTYPES = [torch.float32, torch.float64]


def torch_act(z, act, alpha, gain, clamp):
    """The composition a PyTorch user would write: PyTorch's own module for act (the
    one its registry row replaces; tests/test_activation_registry.py pins those), none
    of fastgan.reference's formulas."""
    y = lookup(act).torch_module(0.2 if alpha is None else alpha)(z)
    if gain is not None:
        y = y * gain
    if clamp is not None:
        y = torch.clamp(y, -clamp, clamp)
    return y


def conv_inputs(case, dtype, transposed, randn):
    shape_w = (case["c_in"], case["c_out"]) if transposed else (case["c_out"], case["c_in"])
    x = randn(case["n"], case["c_in"], case["h"], case["w"], dtype=dtype, channels_last=case["channels_last"])
    w = randn(*shape_w, *case["kernel"], dtype=dtype, scale=0.5)
    b = randn(case["c_out"], dtype=dtype) if case["bias"] else None
    return leaf(x), leaf(w), (leaf(b) if b is not None else None)


def check_against_torch(fast, plain, linear_part, act, inputs, dtype, randn):
    """Forward and every input gradient of fast(*inputs) vs plain(*inputs in float64).

    linear_part is the op without its activation: it gives the magnitude of the summed
    terms that the error is measured against (utils.rel_err).
    """
    y = fast(*inputs)
    ref_inputs = [None if t is None else leaf(t.detach().double()) for t in inputs]
    ref = plain(*ref_inputs)
    assert y.dtype == dtype
    upstream = randn(*y.shape, dtype=dtype)
    with torch.no_grad():
        z64 = linear_part(*[None if t is None else t.detach().double() for t in inputs])
    upstream = upstream.masked_fill(clamp_ambiguous(z64, act, dtype), 0)
    y_mag, grad_mags = magnitudes(linear_part, inputs, upstream, derivative_bound(act["act"], act["alpha"], act["gain"]))
    assert_close(y, ref, dtype, "forward", magnitude=y_mag)
    got = grads(y, inputs, upstream)
    want = grads(ref, ref_inputs, upstream.double())
    for name, g, r, m in zip(["input", "weight", "bias"], got, want, grad_mags):
        assert_close(g, r, dtype, f"grad {name}", magnitude=m)
    return y


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=conv_case(transposed=False), act=activation(), seed=seeds)
def test_conv2d_matches_torch(dtype, case, act, seed):
    rand = Rand(seed)
    x, w, b = conv_inputs(case, dtype, False, rand)
    geo = dict(stride=case["stride"], padding=case["padding"])
    y = check_against_torch(
        lambda x, w, b: FG.conv2d_bias_act(x, w, b, **geo, **act),
        lambda x, w, b: torch_act(F.conv2d(x, w, b, **geo), **act),
        lambda x, w, b: F.conv2d(x, w, b, **geo),
        act,
        [x, w, b],
        dtype,
        rand,
    )
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=conv_case(transposed=True), act=activation(), seed=seeds)
def test_conv_transpose2d_matches_torch(dtype, case, act, seed):
    rand = Rand(seed)
    x, w, b = conv_inputs(case, dtype, True, rand)
    geo = dict(stride=case["stride"], padding=case["padding"], output_padding=case["output_padding"])
    y = check_against_torch(
        lambda x, w, b: FG.conv_transpose2d_bias_act(x, w, b, **geo, **act),
        lambda x, w, b: torch_act(F.conv_transpose2d(x, w, b, **geo), **act),
        lambda x, w, b: F.conv_transpose2d(x, w, b, **geo),
        act,
        [x, w, b],
        dtype,
        rand,
    )
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("n, c_in, h, kernel, stride, output_padding", [
    (1, 3, 2, (4, 4), (1, 2), (0, 1)),  # the case hypothesis found
    (2, 4, 3, (3, 5), (1, 3), (0, 0)),
    (2, 2, 3, (4, 4), (1, 3), (0, 1)),
])
def test_reference_transposed_conv_of_a_one_pixel_wide_input_into_one_channel(n, c_in, h, kernel, stride,
                                                                                output_padding):
    """A channels_last x of width 1 into one output channel: torch 2.13's CPU transposed
    conv gives these input gradients wrong (max errors of 5-6 on gradients of size ~2 in
    a sweep, and once values like 1e35: memory it never wrote); the reference backend's
    are the float64 ones. Each case fails without fastgan.ops.aten's workaround."""
    rand = Rand(0)
    x = rand(n, c_in, h, 1, dtype=torch.float32, channels_last=True)
    w, b = rand(c_in, 1, *kernel, dtype=torch.float32, scale=0.5), None
    geo = dict(stride=stride, padding=(0, 0), output_padding=output_padding)
    ep = dict(act="lrelu", alpha=None, gain=None, clamp=None)
    x = leaf(x)
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    with fastgan.use_backend("reference"):
        check_against_torch(
            lambda x, w, b: FG.conv_transpose2d_bias_act(x, w, b, **geo, **ep),
            lambda x, w, b: torch_act(F.conv_transpose2d(x, w, b, **geo), **ep),
            lambda x, w, b: F.conv_transpose2d(x, w, b, **geo),
            ep,
            [x, leaf(w), b],
            torch.float32,
            rand,
        )


@pytest.mark.parametrize("dtype", DTYPES)
@given(
    lead=st.lists(st.integers(1, 4), min_size=0, max_size=2),
    k=st.one_of(st.sampled_from([1, 3]), st.integers(1, 40)),
    n=st.one_of(st.sampled_from([1, 3]), st.integers(1, 40)),
    bias=st.booleans(),
    act=activation(),
    seed=seeds,
)
def test_linear_matches_torch(dtype, lead, k, n, bias, act, seed):
    rand = Rand(seed)
    x = leaf(rand(*lead, k, dtype=dtype))
    w = leaf(rand(n, k, dtype=dtype, scale=0.3))
    b = leaf(rand(n, dtype=dtype)) if bias else None
    y = check_against_torch(
        lambda x, w, b: FG.linear_bias_act(x, w, b, **act),
        lambda x, w, b: torch_act(F.linear(x, w, b), **act),
        lambda x, w, b: F.linear(x, w, b),
        act,
        [x, w, b],
        dtype,
        rand,
    )
    assert y.shape == (*lead, n)


def test_reference_module_is_the_same_composition():
    """fastgan.reference (the oracle other tests use) agrees with the composition here."""
    from fastgan import reference as R

    x, w, b = randn(2, 3, 7, 7, dtype=torch.float64), randn(5, 3, 3, 3, dtype=torch.float64), randn(5, dtype=torch.float64)
    for act in ("lrelu", "tanh", "silu"):
        got = R.conv2d_bias_act(x, w, b, stride=2, padding=1, act=act, gain=1.5, clamp=1.0)
        want = torch_act(F.conv2d(x, w, b, 2, 1), act, None, 1.5, 1.0)
        assert torch.equal(got, want)


def test_conv_output_is_channels_last_for_nchw_input():
    x = randn(2, 3, 6, 6)
    y = FG.conv2d_bias_act(x, randn(4, 3, 3, 3), None, padding=1)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()


def test_autocast_runs_in_the_autocast_dtype():
    x, w = randn(2, 3, 6, 6), randn(4, 3, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = FG.conv2d_bias_act(x, w, None, act="relu")
        z = FG.linear_bias_act(randn(5, 8), randn(2, 8))
    assert y.dtype == torch.bfloat16 and z.dtype == torch.bfloat16
    assert_close(y, F.relu(F.conv2d(x.double(), w.double())), torch.bfloat16, "autocast conv")


def test_backend_reference_and_auto_agree_on_cpu():
    x, w = randn(2, 3, 6, 6), randn(4, 3, 3, 3)
    with fastgan.use_backend("reference"):
        a = FG.conv2d_bias_act(x, w, None, act="tanh")
    with fastgan.use_backend("auto"):
        b = FG.conv2d_bias_act(x, w, None, act="tanh")
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype,clamp", [(torch.float16, 0.8), (torch.float32, 0.7), (torch.float64, 0.7)])
def test_clamped_outputs_pass_no_gradient(dtype, clamp):
    """A clamped output is stored as clamp rounded to the output dtype (0.7998 for 0.8
    in float16, 0.69999999 for 0.7 in float32): the backward must still see it as
    clamped. x * w = [-1.68, 0.316]: the first is clamped, the second is not."""
    x = torch.tensor([1.54, -0.29], dtype=dtype).view(1, 1, 1, 2).requires_grad_()
    w = torch.tensor([-1.09], dtype=dtype).view(1, 1, 1, 1)
    y = FG.conv2d_bias_act(x, w, None, clamp=clamp)
    assert y[0, 0, 0, 0].item() == pytest.approx(-clamp, rel=1e-3)
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert gx[0, 0, 0, 0].item() == 0.0
    assert gx[0, 0, 0, 1].item() == pytest.approx(-1.09, rel=1e-3)


def test_eager_calls_skip_the_custom_ops_and_match_them():
    """Outside torch.compile the fused functions run the ops' autograd Functions
    (backend triton) or ATen directly (reference), not torch.library's dispatch; the
    forward equals the custom op's bit for bit, the gradients up to rounding."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=gen, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=gen, requires_grad=True)
    backend = "triton" if fastgan._backend.interpreter_enabled() else "reference"
    with fastgan.use_backend(backend):
        y = FG.conv2d_bias_act(x, w, stride=2, padding=1, act="lrelu")
        y_op, _ = torch.ops.fastgan.conv_bias_act(x, w, None, [2, 2], [1, 1], [0, 0], False, "lrelu", 0.2, 1.0, None)
        assert "fastgan_conv_bias_act" in type(y_op.grad_fn).__name__
        assert "fastgan_conv_bias_act" not in type(y.grad_fn).__name__
        torch.testing.assert_close(y, y_op, rtol=0, atol=0)
        g = torch.autograd.grad(y.square().sum(), (x, w))
        g_op = torch.autograd.grad(y_op.square().sum(), (x, w))
        for a, b in zip(g, g_op):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
