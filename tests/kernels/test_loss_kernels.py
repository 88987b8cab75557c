"""The fused adversarial-loss kernel (kernels/loss.py) against the hand-written float64
formulas of tests/test_loss.py: every kind and reduction, float32 and float16 logits
up to +-1e4, 1 to 10^5 elements, real and fake batches of different sizes, one-program
and multi-program (ticketed final sum) launches, determinism, strides, and the public
API on the triton backend."""

import numpy as np
import pytest
import torch
import triton
import triton.language as tl
from hypothesis import example, given, settings, strategies as st

import fastgan
from fastgan import functional as FG
from fastgan.kernels import loss as KL
from fastgan.kernels._common import new_output, poison_outputs
from fastgan.nn import GANLoss
from fastgan.reference.loss import KINDS
from strategies import seeds
from test_loss import hand_derivative, hand_terms
from utils import assert_close

# Tiles of 64 logits and at most 8 programs: a few hundred logits already take the
# multi-program path, and more than 4 partials make the final sum loop over chunks.
SMALL_TILES = dict(block=64, max_programs=8, reduce_block=4)

sizes = st.one_of(
    st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple),  # PatchGAN-like maps, odd sizes
    st.integers(1, 2000).map(lambda n: (n,)),
    st.sampled_from([(10**5,), (99_991,), (3, 1, 181, 181)]),  # few: 0.1-0.3 s each
)


def logits(gen, shape, dtype, scale):
    """Normal logits times `scale`, held to +-1e4 (the range the design promises)."""
    t = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale
    return t.clamp(-1e4, 1e4).to(dtype)


def expected(t, kind, side, y, reduction):
    """(loss or terms, gradient) in float64 from the hand formulas, evaluated on the
    logits' exact values (what the kernel reads)."""
    v = t.double().numpy()
    terms = hand_terms(v, kind, side, y)
    deriv = hand_derivative(v, kind, side, y)
    if reduction == "mean":
        return torch.tensor(terms.mean()), torch.from_numpy(deriv / v.size), torch.tensor(np.abs(terms).mean())
    if reduction == "sum":
        return torch.tensor(terms.sum()), torch.from_numpy(deriv), torch.tensor(np.abs(terms).sum())
    return torch.from_numpy(terms), torch.from_numpy(deriv), None


def check_side(out, grad, t, kind, side, y, reduction):
    want, want_grad, magnitude = expected(t, kind, side, y, reduction)
    acc = torch.float64 if t.dtype == torch.float64 else torch.float32
    assert out.dtype == acc and out.shape == (() if reduction != "none" else t.shape)
    assert grad.dtype == t.dtype and grad.shape == t.shape and grad.stride() == torch.empty_like(t).stride()
    # Losses are computed and returned in float32 (float64 for float64) from the exact
    # logits: that dtype's tolerance whatever the logits' dtype. A reduction of signed terms (hinge,
    # wasserstein, minimax) can cancel: the error is measured against sum |terms|.
    assert_close(out, want.reshape(out.shape), acc, f"{kind} {side} loss", magnitude=magnitude)
    # The gradient is returned in the logits' dtype: the best answer is the exact
    # derivative rounded to that dtype, and that is what it is held to, at that
    # dtype's tolerance (a mean over 10^5 float16 logits gives float16 subnormals,
    # where rounding alone costs more than 5e-3 against the unrounded value).
    assert_close(grad, want_grad.to(t.dtype), t.dtype, f"{kind} {side} gradient")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@settings(max_examples=12)
@given(
    kind=st.sampled_from(KINDS),
    real_shape=sizes,
    fake_shape=sizes,
    scale=st.sampled_from([1.0, 30.0, 3000.0]),
    smooth=st.booleans(),
    small_tiles=st.booleans(),
    seed=seeds,
)
@example(kind="nonsaturating", real_shape=(10**5,), fake_shape=(99_991,), scale=3000.0, smooth=True, small_tiles=False, seed=0)
def test_loss_kernel_matches_hand_formulas(dtype, reduction, kind, real_shape, fake_shape, scale, smooth, small_tiles, seed):
    gen = torch.Generator().manual_seed(seed)
    real, fake = logits(gen, real_shape, dtype, scale), logits(gen, fake_shape, dtype, scale)
    y = 0.9 if smooth and kind not in ("hinge", "wasserstein") else 1.0
    real0, fake0 = real.clone(), fake.clone()
    # Small tiles only for small inputs: 10^5 logits in tiles of 64 is minutes of interpreter.
    small_tiles = small_tiles and real.numel() + fake.numel() <= 4000
    with poison_outputs(), KL.configured(**(SMALL_TILES if small_tiles else {})):
        out_r, out_f, grad_r, grad_f = KL.d_loss_fwd(real, fake, kind, y, reduction)
        out_g, grad_g = KL.g_loss_fwd(fake, kind, reduction)
    assert torch.equal(real, real0) and torch.equal(fake, fake0), "inputs modified"
    check_side(out_r, grad_r, real, kind, "d_real", y, reduction)
    check_side(out_f, grad_f, fake, kind, "d_fake", y, reduction)
    check_side(out_g, grad_g, fake, kind, "g", 1.0, reduction)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("kind", KINDS)
def test_logits_of_1e4_give_the_exact_limits(dtype, kind):
    """At |t| = 1e4, exp(-|t|) is 0 and every term but lsgan's is exactly representable
    in float32 (lsgan's 0.5 * (t - y)^2 is not: float32 tolerance), and every
    derivative rounded to the logits' dtype is exact: the kernel must hit them exactly."""
    t = torch.tensor([1e4, -1e4, 1e4, -1e4, 0.5], dtype=dtype)
    y = 1.0 if kind in ("hinge", "wasserstein") else 0.75
    with poison_outputs():
        terms_r, terms_f, g_r, g_f = KL.d_loss_fwd(t, t, kind, y, "none")
        terms_g, g_g = KL.g_loss_fwd(t, kind, "none")
    for side, terms, grad, label in (("d_real", terms_r, g_r, y), ("d_fake", terms_f, g_f, 1.0), ("g", terms_g, g_g, 1.0)):
        want = hand_terms(t.double().numpy(), kind, side, label)
        want_grad = hand_derivative(t.double().numpy(), kind, side, label)
        assert torch.isfinite(terms).all() and torch.isfinite(grad).all()
        if kind == "lsgan":
            assert_close(terms[:4], torch.from_numpy(want[:4]), torch.float32, f"{side} at 1e4")
        else:
            assert terms[:4].double().tolist() == want[:4].tolist(), (side, terms, want)
        assert torch.equal(grad[:4], torch.from_numpy(want_grad[:4]).to(dtype)), (side, grad, want_grad)
        assert_close(terms[4:], torch.from_numpy(want[4:]), torch.float32, f"{side} at 0.5")


@triton.jit
def _log1p_kernel(e_ptr, out_ptr, n, FP64: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    e = tl.load(e_ptr + offs, mask=offs < n, other=0.0)
    tl.store(out_ptr + offs, KL.log1p_unit(e, FP64), mask=offs < n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log1p_is_accurate_elementwise_down_to_tiny_arguments(dtype):
    """log1p(e) on [0, 1] element by element, tiny e included, where log(1 + e) would
    return 0: every element within 4 ulps of np.log1p (a norm-wise test would hide a
    bad small term behind the large ones)."""
    e = np.concatenate([np.logspace(-40 if dtype == torch.float32 else -300, 0, 500), np.linspace(0, 1, 501), [2**-24, 2**-53]])
    e = torch.from_numpy(e).to(dtype)
    with poison_outputs():
        out = new_output(e.shape, dtype, "cpu")
        _log1p_kernel[(triton.cdiv(e.numel(), 256),)](e, out, e.numel(), FP64=dtype == torch.float64, BLOCK=256)
    want = torch.from_numpy(np.log1p(e.double().numpy()))
    ulp = torch.finfo(dtype).eps
    normal = want >= torch.finfo(dtype).tiny
    rel = ((out.double() - want).abs() / want.clamp_min(torch.finfo(dtype).tiny))[normal]
    assert rel.max().item() <= 4 * ulp, f"max relative error {rel.max().item():.3g}"
    assert out[0].item() >= 0 and (out[e == 0] == 0).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_two_runs_give_identical_bits(reduction):
    """Same inputs, same bits: on the multi-program path (ticketed final sum, whose
    order is fixed whichever program draws the last ticket) and on the one-program path."""
    gen = torch.Generator().manual_seed(1)
    real, fake = logits(gen, (1500,), torch.float32, 3.0), logits(gen, (777,), torch.float32, 3.0)
    for cfg in (SMALL_TILES, {}):
        with KL.configured(**cfg):
            first = KL.d_loss_fwd(real, fake, "nonsaturating", 0.9, reduction) + KL.g_loss_fwd(fake, "minimax", reduction)
            second = KL.d_loss_fwd(real, fake, "nonsaturating", 0.9, reduction) + KL.g_loss_fwd(fake, "minimax", reduction)
        for a, b in zip(first, second):
            assert torch.equal(a.view(-1).view(torch.int32), b.view(-1).view(torch.int32))


def test_strided_and_channels_last_logits_keep_the_reference_strides():
    """Outputs are laid out like torch.empty_like(logits), as the reference's are; a
    strided view is read correctly."""
    gen = torch.Generator().manual_seed(2)
    patch = logits(gen, (4, 1, 5, 6), torch.float32, 2.0).contiguous(memory_format=torch.channels_last)
    view = logits(gen, (6, 9), torch.float32, 2.0).t()[::2]  # not dense
    with poison_outputs():
        terms_r, terms_f, g_r, g_f = KL.d_loss_fwd(patch, view, "lsgan", 0.8, "none")
    ref = fastgan.reference.loss.d_loss_fwd(patch, view, "lsgan", 0.8, "none")
    for got, want in zip((terms_r, terms_f, g_r, g_f), ref):
        assert got.stride() == want.stride()
        assert_close(got, want.double(), torch.float32, "strided logits")


def test_launcher_rejects_bad_arguments():
    x = torch.randn(3)
    with pytest.raises(ValueError, match="kind"):
        KL.g_loss_fwd(x, "bce", "mean")
    with pytest.raises(ValueError, match="reduction"):
        KL.g_loss_fwd(x, "hinge", "max")
    with pytest.raises(ValueError, match="empty"):
        KL.d_loss_fwd(x, x[:0], "hinge", 1.0, "mean")
    with pytest.raises(TypeError, match="float16"):
        KL.g_loss_fwd(x.int(), "hinge", "mean")


def test_public_api_runs_the_kernel_and_matches_the_reference_backend(monkeypatch):
    """GANLoss and the functional losses on the triton backend: the kernel runs (spied),
    losses and gradients equal the reference backend's, and so do second derivatives
    (R1-style, through the op's backward)."""
    calls = []
    for name in ("d_loss_fwd", "g_loss_fwd"):
        fn = getattr(KL, name)
        monkeypatch.setattr(KL, name, lambda *a, _fn=fn, _n=name: calls.append(_n) or _fn(*a))
    gen = torch.Generator().manual_seed(3)
    real = logits(gen, (6, 1, 3, 3), torch.float32, 2.0)
    fake = logits(gen, (5, 1, 3, 3), torch.float32, 2.0)
    results = {}
    for backend in ("reference", "triton"):
        with fastgan.use_backend(backend):
            r, f = real.clone().requires_grad_(), fake.clone().requires_grad_()
            loss = GANLoss("nonsaturating", real_label=0.9)
            d = loss.discriminator(r, f)
            g = loss.generator(f)
            gr, gf = torch.autograd.grad(d, [r, f], create_graph=True)
            (ggr,) = torch.autograd.grad(gr.square().sum(), [r])  # through d(sigmoid)/dr
            (gg,) = torch.autograd.grad(FG.generator_loss(f, "lsgan", reduction="sum"), [f])
            results[backend] = [d, g, gr, gf, ggr, gg]
    assert calls.count("d_loss_fwd") == 1 and calls.count("g_loss_fwd") == 2
    for got, want in zip(results["triton"], results["reference"]):
        assert_close(got, want.double(), torch.float32, "triton vs reference backend")
