"""batch_norm_act (reference backend) against F.batch_norm + activation in float64:
forward, gradients, running statistics; BatchNormAct2d against nn.BatchNorm2d."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st
from torch import nn

from fastgan import functional as FG
from fastgan.nn import BatchNormAct2d
from fastgan.reference.activations import ACTIVATIONS
from strategies import seeds
from test_functional import torch_act
from utils import Rand, assert_close, grads, leaf



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@given(
    n=st.integers(1, 4),
    c=st.one_of(st.sampled_from([1, 3]), st.integers(1, 20)),
    hw=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    act=st.sampled_from(ACTIVATIONS),
    training=st.booleans(),
    affine=st.booleans(),
    channels_last=st.booleans(),
    offset=st.sampled_from([0.0, 3.0]),
    seed=seeds,
)
def test_batch_norm_act_matches_torch(dtype, n, c, hw, act, training, affine, channels_last, offset, seed):
    if training and n * hw[0] * hw[1] < 2:
        n = 2
    rand = Rand(seed)
    x = leaf(rand(n, c, *hw, dtype=dtype, offset=offset, scale=2.0, channels_last=channels_last))
    w = leaf(rand(c, dtype=dtype)) if affine else None
    b = leaf(rand(c, dtype=dtype)) if affine else None
    rm, rv = rand(c, dtype=dtype), rand(c, dtype=dtype).abs() + 0.5
    rm_ref, rv_ref = rm.double(), rv.double()
    x64 = x.detach().double()
    mean_used = x64.mean(dim=(0, 2, 3)) if training else rm_ref.clone()
    var_used = x64.var(dim=(0, 2, 3), unbiased=False) if training else rv_ref.clone()
    # The running mean is 0.7 rm + 0.3 mean: measured against the size of its terms,
    # since the two can cancel (a hypothesis-found case: 1 channel, 1.2e-5 relative).
    rm_terms = 0.7 * rm_ref.abs() + 0.3 * mean_used.abs()
    y = FG.batch_norm_act(x, rm, rv, w, b, training=training, momentum=0.3, act=act)
    ref_in = [leaf(t.detach().double()) if t is not None else None for t in (x, w, b)]
    ref = torch_act(F.batch_norm(ref_in[0], rm_ref, rv_ref, ref_in[1], ref_in[2], training, 0.3, 1e-5), act, None, None, None)
    assert_close(y, ref, dtype, "forward")
    assert_close(rm, rm_ref, dtype, "running_mean", magnitude=rm_terms)
    assert_close(rv, rv_ref, dtype, "running_var")
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    up = rand(*y.shape, dtype=dtype)
    # Magnitudes of the summed terms (see utils.rel_err): every gradient here is a
    # channel sum of signed terms that can cancel (the input gradient to exactly 0
    # with two values per channel). |d act| <= 1.1 for every activation.
    per_channel = lambda v: v.view(1, -1, 1, 1)  # noqa: E731
    rstd = torch.rsqrt(var_used + 1e-5)
    gz_mag = up.double().abs() * 1.1
    xhat_mag = ((x64 - per_channel(mean_used)) * per_channel(rstd)).abs()
    w_mag = w.detach().double().abs() if affine else torch.ones_like(rstd)
    magnitude = {
        "x": gz_mag * per_channel(rstd * w_mag) * (1 + xhat_mag),
        "weight": (gz_mag * xhat_mag).sum(dim=(0, 2, 3)),
        "bias": gz_mag.sum(dim=(0, 2, 3)),
    }
    for name, g, r in zip(["x", "weight", "bias"], grads(y, [x, w, b], up), grads(ref, ref_in, up.double())):
        assert_close(g, r, dtype, f"grad {name}", magnitude=magnitude[name])


def test_constant_channel_gives_finite_output_and_zero_input_gradient():
    x = torch.full((4, 2, 3, 3), 5.0, requires_grad=True)
    y = FG.batch_norm_act(x, None, None, torch.ones(2), torch.zeros(2), training=True, act="relu")
    assert torch.isfinite(y).all() and torch.equal(y, torch.zeros_like(y))
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(gx).all()


def test_large_offset_statistics_are_precise():
    """mean 1e3, std 1e-2. A float32 mean is itself rounded by up to u*|mean|
    (u = 2^-24), which shifts every normalized value by u*|mean|/std = 6e-3 of its
    scale: that is the conditioning bound any float32-statistics algorithm (PyTorch's
    included, 2.4e-3 here) lives with. A one-pass E[x^2] - E[x]^2 misses it by orders
    of magnitude (error ~2: the variance comes out negative or 1000x too large)."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(8, 3, 5, 5, generator=gen, dtype=torch.float64) * 1e-2 + 1e3).float()
    y = FG.batch_norm_act(x, None, None, training=True)
    ref = F.batch_norm(x.double(), None, None, training=True)  # same float32 input, exact statistics
    bound = 2.0**-24 * 1e3 / 1e-2
    assert_close(y, ref, torch.float32, "normalized output", factor=bound / 1e-5)


def test_flat_input_is_batch_norm_1d():
    x = torch.randn(6, 5, dtype=torch.float64)
    y = FG.batch_norm_act(x, None, None, training=True, act="tanh")
    assert torch.allclose(y, torch.tanh(F.batch_norm(x, None, None, training=True)))


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("track", [True, False])
def test_module_matches_batchnorm2d_then_activation(momentum, track):
    torch.manual_seed(0)
    plain = nn.Sequential(nn.BatchNorm2d(4, momentum=momentum, track_running_stats=track), nn.LeakyReLU(0.1))
    with torch.no_grad():
        plain[0].weight.uniform_(0.5, 1.5)
        plain[0].bias.uniform_(-0.5, 0.5)
    fused = BatchNormAct2d(4, momentum=momentum, track_running_stats=track, act="lrelu", alpha=0.1)
    fused.load_state_dict(plain[0].state_dict())
    for step in range(3):
        x = torch.randn(3, 4, 5, 5) + step
        assert torch.allclose(fused(x), plain(x), atol=1e-5)
    if track:
        assert torch.allclose(fused.running_mean, plain[0].running_mean, atol=1e-6)
        assert torch.allclose(fused.running_var, plain[0].running_var, atol=1e-6)
        assert fused.num_batches_tracked.item() == plain[0].num_batches_tracked.item() == 3
    fused.eval(), plain.eval()
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(fused(x), plain(x), atol=1e-5)


def test_module_state_dict_roundtrip_with_plain_batchnorm():
    plain = nn.BatchNorm2d(3)
    plain(torch.randn(4, 3, 2, 2))
    fused = BatchNormAct2d(3, act="relu")
    fused.load_state_dict(plain.state_dict())
    again = nn.BatchNorm2d(3)
    again.load_state_dict(copy.deepcopy(fused.state_dict()))
    assert torch.equal(again.running_var, plain.running_var)
