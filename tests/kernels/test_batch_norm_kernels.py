"""The fused batch norm + activation kernels (kernels/batch_norm.py) against
F.batch_norm + activation in float64 (PyTorch's own, differentiated by autograd):
forward, batch statistics, input/weight/bias gradients, training and eval, NCHW and
channels_last, float32 and float16, constant channels, large offsets, both the
one-program ("fused", also for few rows over narrow channel blocks) and the split
(stats finalized by the last program of each channel block, then apply) paths, the
launches each takes, determinism, and BatchNormAct2d on the triton backend."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings, strategies as st
from torch import nn

import fastgan
from fastgan import functional as FG
from fastgan.bench.launches import recording_launches
from fastgan.kernels import _arrival
from fastgan.kernels import batch_norm as KB
from fastgan.kernels._common import poison_outputs
from fastgan.nn import BatchNormAct2d
from fastgan.reference.activations import ACTIVATIONS, lookup, needs_preactivation, needs_saved
from strategies import seeds
from test_functional import torch_act
from utils import TOLERANCE, assert_close

EPS = 1e-5
# Tiles of at most 16 elements (4 channels x 4 rows), split path always, and the last
# program of a channel block merging 2 partials of 2 channels per step: every loop runs
# several times.
SMALL_TILES = dict(
    tile=16, max_block_c=4, max_block_r=4, target_programs=64, fused_max_tiles=0, fused_max_rows=0,
    finalize_block_p=2, finalize_block_c=2,
)
# The one-program-per-channel-block path for inputs with few rows (rows layout: every
# channels_last input here), over several tiles of 4 channels x 16 rows.
NARROW_TILES = dict(tile=64, max_block_c=16, max_block_r=4, target_programs=64, fused_max_tiles=0,
                    fused_max_rows=10**9, fused_block_c=4)
TILES = {"default": {}, "small": SMALL_TILES, "narrow": NARROW_TILES}


def make_input(gen, shape, dtype, channels_last, offset, scale, constant_channels):
    x = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + offset
    if constant_channels:  # every third channel holds one value: zero variance
        x[:, ::3] = torch.randn(1, x[:, ::3].shape[1], 1, 1, generator=gen, dtype=torch.float64) * scale + offset
    x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def oracle(x, weight, bias, running_mean, running_var, training, act, alpha, upstream):
    """F.batch_norm + activation in float64 on the same values: (y, z, mean, var, and
    the gradients of <y, upstream> with respect to x, weight, bias)."""
    up = lambda t: None if t is None else t.detach().double().requires_grad_()  # noqa: E731
    x64, w64, b64 = up(x), up(weight), up(bias)
    rm = None if running_mean is None else running_mean.double()
    rv = None if running_var is None else running_var.double()
    # Batch norm in training is invariant to a per-channel shift. Shifting by the first
    # value of each channel (exact in float64 for 16/32-bit values) makes a constant
    # channel exactly 0, which F.batch_norm then normalizes exactly; unshifted, its
    # float64 mean is off by an ulp and the output, exactly 0, comes out as 1e-14.
    # In eval the running mean is subtracted first, for the same reason: F.batch_norm's
    # x * scale + shift form leaves 1e-16 where x equals the mean, and relu then passes
    # the gradient of a value that is exactly 0 in the kernel (a hypothesis-found flake).
    if training:
        shift, rm, rv = x64[:1, :, :1, :1].detach(), None, None
    else:
        shift, rm = rm.view(1, -1, 1, 1), torch.zeros_like(rm)
    z = F.batch_norm(x64 - shift, rm, rv, w64, b64, training, 0.0, EPS)
    y = torch_act(z, act, alpha, None, None)
    leaves = [t for t in (x64, w64, b64) if t is not None]
    grads = iter(torch.autograd.grad(y, leaves, upstream.double()))
    gx, gw, gb = (next(grads) if t is not None else None for t in (x64, w64, b64))
    xd = x.detach().double()
    pivot = xd[:1, :, :1, :1]  # the same shift: torch.var of a constant channel is 1e-32, not 0
    mean = pivot.view(-1) + (xd - pivot).mean(dim=(0, 2, 3))
    return y.detach(), z.detach(), mean, (xd - pivot).var(dim=(0, 2, 3), unbiased=False), gx, gw, gb


def grad_magnitudes(x, weight, upstream, mean, var):
    """Sizes of the summed terms of each gradient (see utils.rel_err): they all are
    channel sums of signed terms that can cancel. |d act| <= 1.1 for every act."""
    per_channel = lambda v: v.view(1, -1, 1, 1)  # noqa: E731
    rstd = torch.rsqrt(var + EPS)
    gz = upstream.double().abs() * 1.1
    xhat = ((x.double() - per_channel(mean)) * per_channel(rstd)).abs()
    w = weight.double().abs() if weight is not None else torch.ones_like(rstd)
    return {
        "x": gz * per_channel(rstd * w) * (1 + xhat),
        "weight": (gz * xhat).sum(dim=(0, 2, 3)),
        "bias": gz.sum(dim=(0, 2, 3)),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@settings(max_examples=25)
@given(
    n=st.integers(1, 8),
    c=st.one_of(st.integers(1, 70), st.sampled_from([1, 3, 64, 70])),
    h=st.integers(1, 17),
    w=st.integers(1, 17),
    act=st.sampled_from(ACTIVATIONS),
    training=st.booleans(),
    affine=st.sampled_from(["both", "none", "weight", "bias"]),
    need_affine=st.booleans(),
    fp32_params=st.booleans(),
    channels_last=st.booleans(),
    grad_channels_last=st.booleans(),
    offset=st.sampled_from([0.0, 3.0]),
    constant_channels=st.booleans(),
    tiles=st.sampled_from(sorted(TILES)),
    seed=seeds,
)
@example(n=8, c=70, h=17, w=17, act="silu", training=True, affine="both", need_affine=True, fp32_params=False,
         channels_last=True, grad_channels_last=False, offset=3.0, constant_channels=True, tiles="default", seed=0)
@example(n=8, c=70, h=17, w=17, act="lrelu", training=True, affine="both", need_affine=True, fp32_params=False,
         channels_last=False, grad_channels_last=False, offset=0.0, constant_channels=False, tiles="default", seed=1)
def test_batch_norm_kernels_match_torch(
    dtype, n, c, h, w, act, training, affine, need_affine, fp32_params, channels_last, grad_channels_last, offset,
    constant_channels, tiles, seed,
):
    if training and n * h * w < 2:
        n = 2  # batch statistics need two values per channel
    gen = torch.Generator().manual_seed(seed)
    pdtype = torch.float32 if fp32_params else dtype
    x = make_input(gen, (n, c, h, w), dtype, channels_last, offset, 2.0, constant_channels)
    weight = torch.randn(c, generator=gen).to(pdtype) if affine in ("both", "weight") else None
    bias = torch.randn(c, generator=gen).to(pdtype) if affine in ("both", "bias") else None
    running_mean = (torch.randn(c, generator=gen) + offset).to(pdtype)
    running_var = (torch.rand(c, generator=gen) + 0.5).to(pdtype)
    upstream = torch.randn(n, c, h, w, generator=gen).to(dtype)
    if grad_channels_last:
        upstream = upstream.contiguous(memory_format=torch.channels_last)
    alpha = 0.1 if lookup(act).uses_alpha else 0.2
    inputs = [t.clone() for t in (x, running_mean, running_var)]
    cfg = TILES[tiles] if x.numel() <= 3000 else {}  # tiles of 16 elements: slow beyond
    with poison_outputs(), KB.configured(**cfg):
        y, z, mean, var = KB.bn_fwd(x, weight, bias, running_mean, running_var, training, EPS, act, alpha)
        saved = z if needs_preactivation(act) else (y if needs_saved(act, None) else x.new_empty(0))
        stats = (mean, var) if training else (running_mean, running_var)
        gx, gw, gb = KB.bn_backward(upstream, saved, x, weight, *stats, training, EPS, act, alpha, need_affine)
    assert all(torch.equal(a, b) for a, b in zip(inputs, (x, running_mean, running_var))), "inputs modified"
    y_ref, z_ref, mean_ref, var_ref, gx_ref, gw_ref, gb_ref = oracle(
        x, weight, bias, running_mean, running_var, training, act, alpha, upstream
    )

    assert y.dtype == x.dtype and y.stride() == x.stride()
    assert_close(y, y_ref, dtype, "y")
    if needs_preactivation(act):
        assert z.stride() == x.stride()
        assert_close(z, z_ref, dtype, "z")
    else:
        assert z.numel() == 0
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    if training:
        assert mean.dtype == var.dtype == acc and mean.shape == var.shape == (c,)
        # Statistics are computed in float32 (float64 for float64) from the exact input
        # values: that dtype's tolerance for any input dtype. A mean can cancel to ~0: measured against the
        # mean of |x|. The variance is a sum of squares (no cancellation).
        assert_close(mean, mean_ref, acc, "batch mean", magnitude=x.double().abs().mean(dim=(0, 2, 3)))
        assert_close(var, var_ref, acc, "batch variance")
    else:
        assert mean.numel() == var.numel() == 0 and mean.dtype == var.dtype == acc

    used_mean, used_var = (mean_ref, var_ref) if training else (running_mean.double(), running_var.double())
    magnitude = grad_magnitudes(x, weight, upstream, used_mean, used_var)
    assert gx.dtype == x.dtype and gx.stride() == x.stride()
    assert_close(gx, gx_ref, dtype, "grad x", magnitude=magnitude["x"])
    if need_affine:
        assert gw.dtype == gb.dtype == (pdtype if weight is not None else dtype) and gw.shape == gb.shape == (c,)
        # Without a weight (bias) the op still returns d/d weight at weight = 1 (d/d bias
        # at bias = 0): the oracle then differentiates with that weight (bias) added.
        args = (running_mean, running_var, training, act, alpha, upstream)
        ones, zeros = torch.ones(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
        gw_want = gw_ref if weight is not None else oracle(x, ones, bias, *args)[5]
        gb_want = gb_ref if bias is not None else oracle(x, weight, zeros, *args)[6]
        # Held to the coarser of x's dtype and their own: float32 gradients of a float16
        # x are sums over the 16-bit upstream gradient and saved activation, whose
        # rounding bounds their accuracy; those of a float64 x are rounded to float32.
        coarser = max(dtype, gw.dtype, key=TOLERANCE.get)
        assert_close(gw, gw_want, coarser, "grad weight", magnitude=magnitude["weight"])
        assert_close(gb, gb_want, coarser, "grad bias", magnitude=magnitude["bias"])
    else:
        assert gw.numel() == gb.numel() == 0


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("tiles", sorted(TILES))
def test_large_offset_statistics(channels_last, tiles):
    """mean 1e3, std 1e-2. The pivot makes x - pivot exact, so the forward (output,
    batch mean and variance) keeps float32 accuracy: held to the float32 tolerance,
    400x below the conditioning bound u*|mean|/std = 6e-3 that tests/test_batch_norm.py
    derives for a float32 mean. The backward receives that rounded float32 mean (its
    signature), so its xhat = (x - mean) * rstd carries the bound: held to it."""
    gen = torch.Generator().manual_seed(0)
    x = make_input(gen, (8, 5, 6, 5), torch.float32, channels_last, 1e3, 1e-2, False)
    weight, bias = torch.rand(5, generator=gen) + 0.5, torch.randn(5, generator=gen)
    upstream = torch.randn(8, 5, 6, 5, generator=gen)
    with poison_outputs(), KB.configured(**TILES[tiles]):
        y, _, mean, var = KB.bn_fwd(x, weight, bias, None, None, True, EPS, "tanh", 0.2)
        gx, gw, gb = KB.bn_backward(upstream, y, x, weight, mean, var, True, EPS, "tanh", 0.2, True)
    y_ref, _, mean_ref, var_ref, gx_ref, gw_ref, gb_ref = oracle(x, weight, bias, None, None, True, "tanh", 0.2, upstream)
    assert_close(y, y_ref, torch.float32, "y")
    assert_close(mean, mean_ref, torch.float32, "mean")
    assert_close(var, var_ref, torch.float32, "variance")
    bound = 2.0**-24 * 1e3 / 1e-2
    magnitude = grad_magnitudes(x, weight, upstream, mean_ref, var_ref)
    for name, got, want in (("x", gx, gx_ref), ("weight", gw, gw_ref), ("bias", gb, gb_ref)):
        assert_close(got, want, torch.float32, f"grad {name}", factor=bound / 1e-5, magnitude=magnitude[name])


def test_constant_channels_give_exact_zero_variance_and_bias_output():
    """A constant channel: x - pivot is exactly 0, so the variance is exactly 0, the
    mean exactly the value, and the output exactly act(bias), on both paths."""
    x = torch.full((4, 3, 5, 3), 7.3)
    x[:, 1] = -2.1
    bias = torch.tensor([0.5, -0.25, 2.0])
    for cfg, memory_format in itertools.product(TILES.values(), (torch.contiguous_format, torch.channels_last)):
        with poison_outputs(), KB.configured(**cfg):
            y, _, mean, var = KB.bn_fwd(x.contiguous(memory_format=memory_format), torch.ones(3), bias,
                                        None, None, True, EPS, "relu", 0.2)
        assert torch.equal(var, torch.zeros(3)) and torch.equal(mean, x[0, :, 0, 0])
        assert torch.equal(y, F.relu(bias).view(1, 3, 1, 1).expand_as(y))


@pytest.mark.parametrize(
    "tiles,forward,backward,eval_backward",
    [
        # Split: the last program of each channel block merges the partials, so no
        # finalize launch; eval's backward is then a single pass.
        ("small", ["_bn_stats_kernel", "_bn_normalize_kernel"], ["_bn_grad_sums_kernel", "_bn_grad_input_kernel"],
         ["_bn_grad_sums_kernel"]),
        ("narrow", ["_bn_normalize_kernel"], ["_bn_grad_input_kernel"], ["_bn_grad_sums_kernel"]),
    ],
)
def test_launches_per_call_and_counters_left_zero(tiles, forward, backward, eval_backward):
    gen = torch.Generator().manual_seed(9)
    x = make_input(gen, (4, 6, 5, 5), torch.float32, True, 1.0, 2.0, False)
    weight, upstream = torch.randn(6, generator=gen), torch.randn(4, 6, 5, 5, generator=gen)
    with poison_outputs(), KB.configured(**TILES[tiles]):
        with recording_launches() as fwd:
            y, _, mean, var = KB.bn_fwd(x, weight, None, None, None, True, EPS, "relu", 0.2)
        with recording_launches() as bwd:
            KB.bn_backward(upstream, y, x, weight, mean, var, True, EPS, "relu", 0.2, True)
        with recording_launches() as eval_bwd:
            KB.bn_backward(upstream, y, x, weight, mean, var + 1.0, False, EPS, "relu", 0.2, True)
    assert [launch.name for launch in fwd] == forward
    assert [launch.name for launch in bwd] == backward
    assert [launch.name for launch in eval_bwd] == eval_backward
    if tiles == "small":
        assert fwd[0].grid[0] > 1 and bwd[0].grid[0] > 1 and eval_bwd[0].grid[0] > 1  # several row programs
    assert not _arrival.tile_counters(1, x.device).any(), "a channel block's counter was not reset"


@pytest.mark.parametrize("training", [True, False])
def test_two_runs_give_identical_bits(training):
    gen = torch.Generator().manual_seed(5)
    x = make_input(gen, (3, 6, 7, 5), torch.float32, True, 1.0, 2.0, False)
    weight, bias = torch.randn(6, generator=gen), torch.randn(6, generator=gen)
    rm, rv = torch.randn(6, generator=gen), torch.rand(6, generator=gen) + 0.5
    upstream = torch.randn(3, 6, 7, 5, generator=gen)

    def run():
        y, z, mean, var = KB.bn_fwd(x, weight, bias, rm, rv, training, EPS, "silu", 0.2)
        stats = (mean, var) if training else (rm, rv)
        return (y, z, mean, var) + KB.bn_backward(upstream, z, x, weight, *stats, training, EPS, "silu", 0.2, True)

    for cfg in TILES.values():
        with KB.configured(**cfg):
            first, second = run(), run()
        for a, b in zip(first, second):
            assert torch.equal(a.view(torch.int32), b.view(torch.int32))


def test_strided_inputs_are_handled_and_outputs_keep_empty_like_strides():
    """A non-dense x and an x in neither NCHW nor channels_last order are read right
    and give outputs laid out like torch.empty_like(x), as the reference's are."""
    gen = torch.Generator().manual_seed(6)
    base = torch.randn(3, 8, 5, 4, generator=gen)
    for x in (base[:, ::2], base.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)):
        upstream = torch.randn(x.shape, generator=gen)
        with poison_outputs():
            y, z, mean, var = KB.bn_fwd(x, None, None, None, None, True, EPS, "silu", 0.2)
            gx, _, _ = KB.bn_backward(upstream, z, x, None, mean, var, True, EPS, "silu", 0.2, False)
        y_ref, z_ref, mean_ref, var_ref, gx_ref, _, _ = oracle(x, None, None, None, None, True, "silu", 0.2, upstream)
        magnitude = grad_magnitudes(x, None, upstream, mean_ref, var_ref)["x"]
        for got, want, name, mag in ((y, y_ref, "y", None), (z, z_ref, "z", None), (gx, gx_ref, "gx", magnitude)):
            assert got.stride() == torch.empty_like(x).stride()
            assert_close(got, want, torch.float32, name, magnitude=mag)


def check_in_kernel_running_update(x, tiles, momentum, gen):
    """bn_fwd(update=...) on x: the running statistics the normalize launch updates are
    to the bit what nn.BatchNorm's update with PyTorch ops (on x's device) gives from
    the batch statistics it returns, and the batch counter it is handed goes up by
    exactly one (however many programs the launch has). Returns (launches, y, mean,
    var) and the inputs (weight, bias)."""
    c = x.shape[1]
    weight, bias = torch.randn(c, generator=gen).to(x.device), torch.randn(c, generator=gen).to(x.device)
    run_mean = torch.randn(c, generator=gen).to(x.device)
    run_var = (torch.rand(c, generator=gen) + 0.5).to(x.device)
    want_mean, want_var = run_mean.clone(), run_var.clone()
    before = int(torch.randint(0, 2**40, (), generator=gen))
    counter = torch.tensor(before, dtype=torch.long, device=x.device)
    count = x.numel() // c
    with poison_outputs(), KB.configured(**TILES[tiles]):
        with recording_launches() as launches:
            y, _, mean, var = KB.bn_fwd(x, weight, bias, None, None, True, EPS, "relu", 0.2,
                                        (run_mean, run_var, momentum, count / (count - 1), counter))
    fastgan.functional.update_running_stats(want_mean, want_var, mean, var, momentum, count)
    assert not torch.equal(run_mean, run_mean.new_zeros(c))
    assert torch.equal(run_mean, want_mean) and torch.equal(run_var, want_var)
    assert counter.item() == before + 1
    (normalize,) = [launch for launch in launches if launch.name == "_bn_normalize_kernel"]
    assert normalize.kwargs["COUNT_BATCH"] is True
    return launches, (y, mean, var), (weight, bias)


@pytest.mark.parametrize("tiles, mode", [("small", "batch"), ("narrow", "own")])
def test_forward_updates_running_statistics_in_the_normalize_launch(tiles, mode):
    """bn_fwd(update=...) updates float32 running statistics in its normalize launch,
    to the bit what nn.BatchNorm's update with PyTorch ops gives from the batch
    statistics it returns, with the statistics split over programs ('batch') or
    computed by the normalize program itself ('own'); y is the same as without."""
    gen = torch.Generator().manual_seed(13)
    x = make_input(gen, (4, 6, 5, 5), torch.float32, True, 1.0, 2.0, False)
    launches, (y, mean, var), (weight, bias) = check_in_kernel_running_update(x, tiles, 0.3, gen)
    (normalize,) = [launch for launch in launches if launch.name == "_bn_normalize_kernel"]
    assert normalize.kwargs["STATS"] == mode and normalize.kwargs["UPDATE_RUNNING"] is True
    # Several programs in both directions of the grid: one of them counts.
    assert normalize.grid[1] > 1 and (mode == "own" or normalize.grid[0] > 1)
    with poison_outputs(), KB.configured(**TILES[tiles]):
        y_plain, _, mean_plain, var_plain = KB.bn_fwd(x, weight, bias, None, None, True, EPS, "relu", 0.2)
    assert torch.equal(y, y_plain) and torch.equal(mean, mean_plain) and torch.equal(var, var_plain)


def test_forward_update_rejects_running_statistics_it_cannot_write():
    x = torch.randn(2, 3, 4, 4)
    good = torch.zeros(3)
    for bad, match in ((torch.zeros(4), "running_mean"), (torch.zeros(3, dtype=torch.float64), "running_mean"),
                       (torch.zeros(6)[::2], "running_mean")):
        with pytest.raises(ValueError, match=match):
            KB.bn_fwd(x, None, None, None, None, True, EPS, "relu", 0.2, (bad, good, 0.1, 1.0))
    with pytest.raises(ValueError, match="running_var"):
        KB.bn_fwd(x, None, None, None, None, True, EPS, "relu", 0.2, (good, None, 0.1, 1.0))
    with pytest.raises(ValueError, match="training"):
        KB.bn_fwd(x, None, None, good, good, False, EPS, "relu", 0.2, (good, good, 0.1, 1.0))
    with pytest.raises(ValueError, match="float32 statistics"):
        KB.bn_fwd(x.double(), None, None, None, None, True, EPS, "relu", 0.2, (good, good, 0.1, 1.0))
    for bad in (torch.tensor(1, dtype=torch.int32), torch.zeros(2, dtype=torch.long)):
        with pytest.raises(ValueError, match="num_batches_tracked"):
            KB.bn_fwd(x, None, None, None, None, True, EPS, "relu", 0.2, (good, good, 0.1, 1.0, bad))


def test_empty_batch_in_eval_gives_empty_outputs():
    x = torch.randn(0, 3, 4, 4)
    rm, rv = torch.zeros(3), torch.ones(3)
    y, z, mean, var = KB.bn_fwd(x, None, None, rm, rv, False, EPS, "silu", 0.2)
    assert y.shape == z.shape == x.shape and mean.numel() == var.numel() == 0
    gx, gw, gb = KB.bn_backward(x, z, x, torch.ones(3), rm, rv, False, EPS, "silu", 0.2, True)
    assert gx.shape == x.shape and torch.equal(gw, torch.zeros(3)) and torch.equal(gb, torch.zeros(3))


def test_launcher_rejects_bad_arguments():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="4-D"):
        KB.bn_fwd(x[0], None, None, None, None, True, EPS, "relu", 0.2)
    with pytest.raises(ValueError, match="weight"):
        KB.bn_fwd(x, torch.ones(4), None, None, None, True, EPS, "relu", 0.2)
    with pytest.raises(ValueError, match="act"):
        KB.bn_fwd(x, None, None, None, None, True, EPS, "gelu", 0.2)
    with pytest.raises(ValueError, match="running"):
        KB.bn_fwd(x, None, None, None, None, False, EPS, "relu", 0.2)
    with pytest.raises(TypeError, match="float16"):
        KB.bn_fwd(x.int(), None, None, None, None, True, EPS, "relu", 0.2)


@pytest.mark.parametrize("momentum", [0.3, None])
@pytest.mark.parametrize("channels_last", [False, True])
def test_module_on_triton_backend_matches_batchnorm2d_then_activation(monkeypatch, momentum, channels_last):
    """BatchNormAct2d on the triton backend runs the kernels (spied) and matches
    nn.BatchNorm2d + LeakyReLU in float64: outputs, running statistics over three
    training steps, eval outputs, and the gradients of x, weight and bias."""
    calls = []
    for name in ("bn_fwd", "bn_backward"):
        fn = getattr(KB, name)
        monkeypatch.setattr(KB, name, lambda *a, _fn=fn, _n=name: calls.append(_n) or _fn(*a))
    gen = torch.Generator().manual_seed(7)
    plain = nn.Sequential(nn.BatchNorm2d(6, momentum=momentum), nn.LeakyReLU(0.1)).double()
    with torch.no_grad():
        plain[0].weight.uniform_(0.5, 1.5, generator=gen)
        plain[0].bias.uniform_(-0.5, 0.5, generator=gen)
    fused = BatchNormAct2d(6, momentum=momentum, act="lrelu", alpha=0.1)
    fused.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in plain[0].state_dict().items()})
    with fastgan.use_backend("triton"):
        for step in range(3):
            x = torch.randn(4, 6, 5, 3, generator=gen) * 2 + step
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            upstream = torch.randn(x.shape, generator=gen)
            xf, x64 = x.clone().requires_grad_(), x.double().requires_grad_()
            fused.zero_grad(), plain.zero_grad()
            out, want = fused(xf), plain(x64)
            assert_close(out, want, torch.float32, f"step {step} output")
            out.backward(upstream)
            want.backward(upstream.double())
            xd = x.double()
            mags = grad_magnitudes(x, fused.weight.detach(), upstream, xd.mean((0, 2, 3)), xd.var((0, 2, 3), unbiased=False))
            assert_close(xf.grad, x64.grad, torch.float32, "grad x", magnitude=mags["x"])
            assert_close(fused.weight.grad, plain[0].weight.grad, torch.float32, "grad weight", magnitude=mags["weight"])
            assert_close(fused.bias.grad, plain[0].bias.grad, torch.float32, "grad bias", magnitude=mags["bias"])
        assert_close(fused.running_mean, plain[0].running_mean, torch.float32, "running mean")
        assert_close(fused.running_var, plain[0].running_var, torch.float32, "running var")
        assert fused.num_batches_tracked.item() == 3
        fused.eval(), plain.eval()
        x = torch.randn(2, 6, 4, 4, generator=gen)
        assert_close(fused(x), plain(x.double()), torch.float32, "eval output")
        flat = torch.randn(5, 6, generator=gen)  # [N, C]: batch norm 1d through the functional API
        y = FG.batch_norm_act(flat, None, None, training=True, act="tanh")
        assert_close(y, torch.tanh(F.batch_norm(flat.double(), None, None, training=True)), torch.float32, "1d")
    assert calls.count("bn_fwd") == 3 + 1 + 1 and calls.count("bn_backward") == 3
