"""GPU sweep of the fused loss and batch-norm kernels (marked gpu: skipped without a
CUDA device). Compiled kernels at the sizes the interpreter cannot reach, bfloat16,
and determinism where it can actually fail: programs running concurrently, the loss's
ticketed final sum. Oracles and tolerances are those of the interpreter tests."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from fastgan.kernels import batch_norm as KB
from fastgan.kernels import loss as KL
from fastgan.kernels._common import poison_outputs
from fastgan.reference.activations import ACTIVATIONS as ACTS, needs_preactivation, needs_saved
from fastgan.reference.loss import KINDS
from test_batch_norm_kernels import EPS, check_in_kernel_running_update, grad_magnitudes, make_input, oracle
from test_loss_kernels import check_side, logits
from utils import TOLERANCE, assert_close

pytestmark = pytest.mark.gpu
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _cpu(*tensors):
    return [t.cpu() if t is not None else None for t in tensors]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 255, 2048, 2049, 100_003, 2**20 + 7, 2**24])
def test_loss_sweep(dtype, reduction, kind, n):
    gen = torch.Generator().manual_seed(n)
    real, fake = logits(gen, (n,), dtype, 30.0), logits(gen, (max(n // 3, 1),), dtype, 30.0)
    y = 1.0 if kind in ("hinge", "wasserstein") else 0.9
    with poison_outputs():
        out_r, out_f, g_r, g_f = KL.d_loss_fwd(real.cuda(), fake.cuda(), kind, y, reduction)
        out_g, g_g = KL.g_loss_fwd(fake.cuda(), kind, reduction)
    out_r, out_f, g_r, g_f, out_g, g_g = _cpu(out_r, out_f, g_r, g_f, out_g, g_g)
    check_side(out_r, g_r, real, kind, "d_real", y, reduction)
    check_side(out_f, g_f, fake, kind, "d_fake", y, reduction)
    check_side(out_g, g_g, fake, kind, "g", 1.0, reduction)


@pytest.mark.parametrize("n", [5000, 2**22 + 1])
def test_loss_is_deterministic_on_gpu(n):
    """Many programs racing for the ticket: the bits must not depend on who wins."""
    gen = torch.Generator().manual_seed(0)
    real = logits(gen, (n,), torch.float32, 3.0).cuda()
    fake = logits(gen, (n // 2 + 1,), torch.float32, 3.0).cuda()
    first = KL.d_loss_fwd(real, fake, "nonsaturating", 0.9, "mean")
    for _ in range(20):
        again = KL.d_loss_fwd(real, fake, "nonsaturating", 0.9, "mean")
        assert all(torch.equal(a.view(torch.int32), b.view(torch.int32)) for a, b in zip(first, again))


BN_SHAPES = [(2, 3, 1, 1), (7, 70, 17, 17), (128, 512, 4, 4), (64, 128, 16, 16), (128, 64, 32, 32), (16, 1, 64, 64)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_sweep(dtype, shape, channels_last, training):
    gen = torch.Generator().manual_seed(sum(shape))
    c = shape[1]
    # One activation per case, each act over several shapes: the float64 CPU oracle of
    # an 8M-element case takes seconds.
    act = ACTS[(BN_SHAPES.index(shape) + DTYPES.index(dtype) + 2 * channels_last + 3 * training) % len(ACTS)]
    x = make_input(gen, shape, dtype, channels_last, 3.0, 2.0, constant_channels=c > 2)
    weight, bias = torch.rand(c, generator=gen) + 0.5, torch.randn(c, generator=gen)
    rm, rv = torch.randn(c, generator=gen), torch.rand(c, generator=gen) + 0.5
    upstream = torch.randn(shape, generator=gen).to(dtype)
    dev = [t.cuda() for t in (x, weight, bias, rm, rv, upstream)]
    with poison_outputs():
        y, z, mean, var = KB.bn_fwd(*dev[:5], training, EPS, act, 0.2)
        saved = z if needs_preactivation(act) else (y if needs_saved(act, None) else y.new_empty(0))
        stats = (mean, var) if training else (dev[3], dev[4])
        gx, gw, gb = KB.bn_backward(dev[5], saved, dev[0], dev[1], *stats, training, EPS, act, 0.2, True)
    y, gx, gw, gb, mean, var = _cpu(y, gx, gw, gb, mean, var)
    y_ref, _, mean_ref, var_ref, gx_ref, gw_ref, gb_ref = oracle(x, weight, bias, rm, rv, training, act, 0.2, upstream)
    assert y.stride() == x.stride() and gx.stride() == x.stride()
    assert_close(y, y_ref, dtype, f"{act} y")
    used = (mean_ref, var_ref) if training else (rm.double(), rv.double())
    mags = grad_magnitudes(x, weight, upstream, *used)
    coarser = max(dtype, torch.float32, key=TOLERANCE.get)
    assert_close(gx, gx_ref, dtype, f"{act} grad x", magnitude=mags["x"])
    assert_close(gw, gw_ref, coarser, f"{act} grad weight", magnitude=mags["weight"])
    assert_close(gb, gb_ref, coarser, f"{act} grad bias", magnitude=mags["bias"])
    if training:
        assert_close(mean, mean_ref, torch.float32, "mean", magnitude=x.double().abs().mean(dim=(0, 2, 3)))
        assert_close(var, var_ref, torch.float32, "var")


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 64), c=st.integers(1, 300), h=st.integers(1, 40), w=st.integers(1, 40),
    channels_last=st.booleans(), act=st.sampled_from(ACTS), seed=st.integers(0, 2**31 - 1),
)
def test_batch_norm_random_shapes_on_gpu(n, c, h, w, channels_last, act, seed):
    if n * h * w < 2:
        n = 2
    gen = torch.Generator().manual_seed(seed)
    x = make_input(gen, (n, c, h, w), torch.float32, channels_last, 1.0, 2.0, constant_channels=seed % 2 == 0)
    upstream = torch.randn(x.shape, generator=gen)
    with poison_outputs():
        y, z, mean, var = KB.bn_fwd(x.cuda(), None, None, None, None, True, EPS, act, 0.2)
        saved = z if needs_preactivation(act) else (y if needs_saved(act, None) else y.new_empty(0))
        gx, _, _ = KB.bn_backward(upstream.cuda(), saved, x.cuda(), None, mean, var, True, EPS, act, 0.2, False)
    y_ref, _, mean_ref, var_ref, gx_ref, _, _ = oracle(x, None, None, None, None, True, act, 0.2, upstream)
    assert_close(y.cpu(), y_ref, torch.float32, "y")
    assert_close(gx.cpu(), gx_ref, torch.float32, "gx", magnitude=grad_magnitudes(x, None, upstream, mean_ref, var_ref)["x"])


@pytest.mark.parametrize("channels_last", [False, True])
def test_batch_norm_is_deterministic_on_gpu(channels_last):
    gen = torch.Generator().manual_seed(1)
    x = make_input(gen, (64, 96, 16, 16), torch.bfloat16, channels_last, 1.0, 2.0, False).cuda()
    weight, upstream = torch.rand(96, device="cuda") + 0.5, torch.randn(x.shape, device="cuda").to(x.dtype)

    def run():
        y, z, mean, var = KB.bn_fwd(x, weight, None, None, None, True, EPS, "lrelu", 0.2)
        return (y, mean, var) + KB.bn_backward(upstream, y, x, weight, mean, var, True, EPS, "lrelu", 0.2, True)

    first = run()
    for _ in range(10):
        assert all(torch.equal(a, b) for a, b in zip(first, run()))


@pytest.mark.parametrize("transposed", [False, True])
def test_split_k_weight_gradient_is_deterministic_on_gpu(transposed):
    """The split-K weight and bias gradients of a DCGAN-sized layer: many programs race
    for each output tile's ticket (kernels/_arrival.py); the bits must not depend on who
    wins, the counters must be back to 0 after every launch, and the result must match
    the float64 gradient."""
    import torch.nn.functional as F

    from fastgan.kernels import _arrival
    from fastgan.kernels import conv as KC

    gen = torch.Generator().manual_seed(3)
    c_in, c_out, hw = (256, 128, 8) if transposed else (128, 256, 16)
    x = torch.randn(256, c_in, hw, hw, generator=gen).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    w = torch.randn(*((c_in, c_out) if transposed else (c_out, c_in)), 4, 4, generator=gen, dtype=torch.float64)
    conv = F.conv_transpose2d if transposed else F.conv2d
    y_shape = conv(x[:1].double(), w, stride=2, padding=1).shape[1:]
    grad = torch.randn(256, *y_shape, generator=gen).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    dev = [t.cuda() for t in (grad, x)]

    def run():
        return KC.conv_grad_weight(dev[0], None, dev[1], [4, 4], [2, 2], [1, 1], transposed, "linear", 0.2, 1.0,
                                   None, True)

    with poison_outputs():
        first = run()
        for _ in range(10):
            again = run()
            assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not _arrival.tile_counters(1, dev[1].device).any()
    wd = w.clone().requires_grad_()
    ref_w, = torch.autograd.grad(conv(x.double(), wd, stride=2, padding=1), wd, grad.double())
    gw, gb = _cpu(*first)
    assert_close(gw, ref_w, torch.bfloat16, "grad weight")
    assert_close(gb, grad.double().sum(dim=(0, 2, 3)), torch.bfloat16, "grad bias")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape, tiles", [((256, 128, 16, 16), "default"), ((256, 512, 4, 4), "default"),
                                          ((64, 96, 9, 9), "small"), ((64, 96, 9, 9), "narrow")])
def test_forward_updates_running_statistics_on_gpu(dtype, shape, tiles):
    """bn_fwd(update=...) on compiled kernels (FP fusion on, as the device run sets it):
    the float32 running statistics, updated in the normalize launch, are to the bit
    what nn.BatchNorm's update with PyTorch's CUDA ops gives from the returned batch
    statistics; the statistics split over programs or computed by the normalize
    program itself ('own'), whichever the tiles choose."""
    gen = torch.Generator().manual_seed(17)
    x = make_input(gen, shape, dtype, True, 1.0, 2.0, False).cuda()
    check_in_kernel_running_update(x, tiles, 0.1, gen)
