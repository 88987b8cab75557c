"""Adversarial losses against hand-written float64 formulas, including |logit| = 1e4
in float16 and float32, for every kind and reduction."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from fastgan import functional as FG
from fastgan.nn import GANLoss
from fastgan.reference.loss import KINDS
from strategies import seeds
from utils import Rand, assert_close


def softplus(t):
    return np.logaddexp(0.0, t)  # log(1 + e^t) without overflow


def hand_terms(logits, kind, side, y=1.0):
    """The table of fastgan.reference.loss in float64. softplus(t) - y*t is written as
    softplus(-t) + (1 - y)*t, its exact equal: the literal form loses e^-t against t
    even in float64 (4% at t = 30)."""
    t = np.asarray(logits, dtype=np.float64)
    table = {
        ("nonsaturating", "d_real"): lambda: softplus(-t) + (1 - y) * t,
        ("nonsaturating", "d_fake"): lambda: softplus(t),
        ("nonsaturating", "g"): lambda: softplus(-t),
        ("minimax", "d_real"): lambda: softplus(-t) + (1 - y) * t,
        ("minimax", "d_fake"): lambda: softplus(t),
        ("minimax", "g"): lambda: -softplus(t),
        ("lsgan", "d_real"): lambda: 0.5 * (t - y) ** 2,
        ("lsgan", "d_fake"): lambda: 0.5 * t**2,
        ("lsgan", "g"): lambda: 0.5 * (t - 1) ** 2,
        ("hinge", "d_real"): lambda: np.maximum(0, 1 - t),
        ("hinge", "d_fake"): lambda: np.maximum(0, 1 + t),
        ("hinge", "g"): lambda: -t,
        ("wasserstein", "d_real"): lambda: -t,
        ("wasserstein", "d_fake"): lambda: t,
        ("wasserstein", "g"): lambda: -t,
    }
    return table[(kind, side)]()


def hand_derivative(logits, kind, side, y=1.0):
    t = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore"):  # exp overflows to inf and 1 / inf is the right 0
        sig = 1 / (1 + np.exp(-t))
        sig_neg = 1 / (1 + np.exp(t))  # sigmoid(-t) = 1 - sigmoid(t), without cancellation
    table = {
        ("nonsaturating", "d_real"): lambda: (1 - y) - sig_neg,
        ("nonsaturating", "d_fake"): lambda: sig,
        ("nonsaturating", "g"): lambda: -sig_neg,
        ("minimax", "d_real"): lambda: (1 - y) - sig_neg,
        ("minimax", "d_fake"): lambda: sig,
        ("minimax", "g"): lambda: -sig,
        ("lsgan", "d_real"): lambda: t - y,
        ("lsgan", "d_fake"): lambda: t,
        ("lsgan", "g"): lambda: t - 1,
        ("hinge", "d_real"): lambda: -(t < 1).astype(np.float64),
        ("hinge", "d_fake"): lambda: (t > -1).astype(np.float64),
        ("hinge", "g"): lambda: -np.ones_like(t),
        ("wasserstein", "d_real"): lambda: -np.ones_like(t),
        ("wasserstein", "d_fake"): lambda: np.ones_like(t),
        ("wasserstein", "g"): lambda: -np.ones_like(t),
    }
    return table[(kind, side)]()


def reduce(v, reduction):
    return v.mean() if reduction == "mean" else v.sum() if reduction == "sum" else v


def scale_of(reduction, n):
    return 1.0 / n if reduction == "mean" else 1.0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@given(
    real_shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    fake_shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    scale=st.sampled_from([1.0, 30.0, 1e4]),
    smooth=st.booleans(),
    seed=seeds,
)
def test_losses_match_hand_formulas(kind, reduction, dtype, real_shape, fake_shape, scale, smooth, seed):
    rand = Rand(seed)
    y = 0.9 if smooth and kind not in ("hinge", "wasserstein") else 1.0
    real = rand(*real_shape, dtype=dtype, scale=scale).requires_grad_()
    fake = rand(*fake_shape, dtype=dtype, scale=scale).requires_grad_()
    r64, f64 = real.detach().double().numpy(), fake.detach().double().numpy()
    out_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    tol_dtype = torch.float64 if dtype == torch.float64 else torch.float32

    d = FG.discriminator_loss(real, fake, kind, real_label=y, reduction=reduction)
    g = FG.generator_loss(fake, kind, reduction=reduction)
    want_r, want_f = reduce(hand_terms(r64, kind, "d_real", y), reduction), reduce(hand_terms(f64, kind, "d_fake"), reduction)
    want_g = reduce(hand_terms(f64, kind, "g"), reduction)
    if reduction == "none":
        assert d[0].shape == real.shape and d[1].shape == fake.shape and g.shape == fake.shape
        assert d[0].dtype == d[1].dtype == g.dtype == out_dtype
        assert_close(d[0], torch.from_numpy(want_r), tol_dtype, "D real terms")
        assert_close(d[1], torch.from_numpy(want_f), tol_dtype, "D fake terms")
        assert_close(g, torch.from_numpy(want_g), tol_dtype, "G terms")
        d_total = d[0].sum() + d[1].sum()
        g_total = g.sum()
        scale_r = scale_f = 1.0
    else:
        assert d.dim() == 0 and d.dtype == out_dtype and torch.isfinite(d)
        # A reduction of signed terms can cancel: measure against the reduced |terms|.
        mag = lambda v: torch.tensor(reduce(np.abs(v), reduction))  # noqa: E731
        mag_d = mag(hand_terms(r64, kind, "d_real", y)) + mag(hand_terms(f64, kind, "d_fake"))
        assert_close(d, torch.tensor(want_r + want_f), tol_dtype, "D loss", magnitude=mag_d)
        assert_close(g, torch.tensor(want_g), tol_dtype, "G loss", magnitude=mag(hand_terms(f64, kind, "g")))
        d_total, g_total = d, g
        scale_r, scale_f = scale_of(reduction, real.numel()), scale_of(reduction, fake.numel())
    gr, gf = torch.autograd.grad(d_total, [real, fake])
    (gg,) = torch.autograd.grad(g_total, [fake])
    assert gr.dtype == dtype and gf.dtype == dtype
    # Gradients are rounded to the logits' dtype: compare at that precision.
    assert_close(gr, torch.from_numpy(hand_derivative(r64, kind, "d_real", y) * scale_r), dtype, "D grad real")
    assert_close(gf, torch.from_numpy(hand_derivative(f64, kind, "d_fake") * scale_f), dtype, "D grad fake")
    assert_close(gg, torch.from_numpy(hand_derivative(f64, kind, "g") * scale_f), dtype, "G grad")


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_extreme_logits_have_the_right_limits(dtype):
    big = torch.tensor([1e4, -1e4], dtype=dtype)
    terms_r, terms_f = FG.discriminator_loss(big, big, "nonsaturating", reduction="none")
    # softplus(1e4) - 1e4 -> 0, softplus(-1e4) + 1e4 -> 1e4; softplus(1e4) -> 1e4, softplus(-1e4) -> 0
    assert terms_r.tolist() == [0.0, 1e4] and terms_f.tolist() == [1e4, 0.0]
    g = FG.generator_loss(big, "nonsaturating", reduction="none")
    assert g.tolist() == [0.0, 1e4]
    assert FG.generator_loss(big, "minimax", reduction="none").tolist() == [-1e4, -0.0]
    ls = FG.generator_loss(big, "lsgan", reduction="sum")
    assert math.isfinite(ls.item()) and ls.item() == pytest.approx(0.5 * (9999**2 + 10001**2), rel=1e-6)
    x = big.clone().requires_grad_()
    FG.discriminator_loss(x, x.detach(), "nonsaturating").backward()
    assert torch.isfinite(x.grad).all() and x.grad.tolist() == [0.0, -0.5]


def test_real_and_fake_batches_may_differ_and_patch_maps_work():
    real, fake = torch.randn(8, 1, 6, 6), torch.randn(3, 1, 6, 6)
    loss = GANLoss("lsgan", real_label=0.9)
    want = 0.5 * ((real - 0.9) ** 2).mean() + 0.5 * (fake**2).mean()
    assert torch.allclose(loss(fake, real), want) and torch.allclose(loss.discriminator(real, fake), want)
    assert torch.allclose(loss(fake), 0.5 * ((fake - 1) ** 2).mean())


def test_inputs_are_not_modified():
    real, fake = torch.randn(5), torch.randn(4)
    r0, f0 = real.clone(), fake.clone()
    for kind in KINDS:
        FG.discriminator_loss(real, fake, kind)
        FG.generator_loss(fake, kind)
    assert torch.equal(real, r0) and torch.equal(fake, f0)
