"""The conv -> batch norm -> act blocks (fastgan.ops.conv_bn, made by fuse()) on the
Triton kernels (interpreter) against a float64 PyTorch reference: output, running
statistics and every gradient; the sums handed from a consumer block's input-gradient
launch to its producer; determinism; double backward; the launches saved."""

from __future__ import annotations

import collections
import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import fastgan
from fastgan.bench.launches import recording_launches
from fastgan.nn import (
    BatchNormAct2d, Conv2dBatchNormAct, ConvTranspose2dAct, ConvTranspose2dBatchNormAct, FoldedBatchNorm2d,
    convert_sync_batchnorm, fuse,
)
from fastgan.nn.fuse import split_blocks
from utils import assert_close

ACT_MODULES = {
    "linear": lambda alpha: None,
    "relu": lambda alpha: nn.ReLU(),
    "lrelu": lambda alpha: nn.LeakyReLU(alpha),
    "tanh": lambda alpha: nn.Tanh(),
    "sigmoid": lambda alpha: nn.Sigmoid(),
    "silu": lambda alpha: nn.SiLU(),
}


def run_(model, x, upstream):
    """Output and gradients of (x, parameters) of one training-mode forward."""
    out = model(x)
    inputs = [x, *model.parameters()]
    return out, torch.autograd.grad(out, inputs, upstream)


def block_model(case, dtype):
    """A Sequential of conv -> BatchNorm2d [-> act] from the drawn case."""
    gen = torch.Generator().manual_seed(case["seed"])
    if case["transposed"]:
        conv = nn.ConvTranspose2d(case["c_in"], case["c_out"], case["k"], case["stride"], case["padding"],
                                  case["output_padding"], bias=case["bias"])
    else:
        conv = nn.Conv2d(case["c_in"], case["c_out"], case["k"], case["stride"], case["padding"], bias=case["bias"])
    bn = nn.BatchNorm2d(case["c_out"], momentum=case["momentum"])
    with torch.no_grad():
        for p in (*conv.parameters(), *bn.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + (1.0 if p is bn.weight else 0.0))
        bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=gen))
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=gen) + 0.5)
    layers = [conv, bn]
    act = ACT_MODULES[case["act"]](case["alpha"])
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers).to(dtype)


@st.composite
def block_case(draw):
    transposed = draw(st.booleans())
    k = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 2))
    padding = draw(st.integers(0, min(1, k - 1)))
    output_padding = draw(st.integers(0, stride - 1)) if transposed else 0
    if transposed:  # output (hw - 1) stride - 2 padding + k + output_padding >= 1
        hw = draw(st.integers(1 + -(-max(0, 1 + 2 * padding - k - output_padding) // stride), 5))
    else:
        hw = draw(st.integers(max(1, k - 2 * padding), 6))
    act = draw(st.sampled_from(sorted(ACT_MODULES)))
    return dict(
        seed=draw(st.integers(0, 2**31 - 1)), transposed=transposed, k=k, stride=stride, padding=padding,
        output_padding=output_padding, hw=hw, n=draw(st.integers(2, 3)), c_in=draw(st.integers(1, 6)),
        c_out=draw(st.integers(1, 6)), bias=draw(st.booleans()), act=act,
        alpha=draw(st.sampled_from([0.1, 0.2])) if act == "lrelu" else None,
        momentum=draw(st.sampled_from([0.1, None])), channels_last=draw(st.booleans()),
    )


@settings(max_examples=12)
@given(case=block_case(), dtype=st.sampled_from([torch.float32, torch.float16, torch.float64]))
def test_block_matches_float64_reference(case, dtype):
    plain = block_model(case, torch.float64)
    fused = fuse(plain).to(dtype)
    assert isinstance(fused[0], (Conv2dBatchNormAct, ConvTranspose2dBatchNormAct))
    assert isinstance(fused[1], FoldedBatchNorm2d)
    gen = torch.Generator().manual_seed(case["seed"] + 1)
    x64 = torch.randn(case["n"], case["c_in"], case["hw"], case["hw"], dtype=torch.float64, generator=gen) + 0.3
    if case["channels_last"]:
        x64 = x64.contiguous(memory_format=torch.channels_last)
    x = x64.to(dtype).requires_grad_(True)
    x64 = x.detach().to(torch.float64).requires_grad_(True)  # the reference sees the same (rounded) input
    out64 = plain(x64)  # n >= 2: every channel of the conv output has >= 2 values
    upstream64 = torch.randn(out64.shape, dtype=torch.float64, generator=gen)
    grads64 = torch.autograd.grad(out64, [x64, *plain.parameters()], upstream64)
    with fastgan.use_backend("triton"):
        out, grads = run_(fused, x, upstream64.to(dtype))
    assert out.dtype == dtype and out.shape == out64.shape
    assert_close(out, out64, dtype, "output", factor=2.0)
    names = ["x", *(name for name, _ in plain.named_parameters())]
    mags = _gradient_magnitudes(plain, x64, upstream64)
    for name, got, want in zip(names, grads, grads64, strict=True):
        assert_close(got, want, dtype, f"gradient of {name}", factor=4.0, magnitude=mags[name])
    running = _running_magnitudes(case, x64)
    for (name, got), want in zip(fused.named_buffers(), plain.buffers(), strict=True):
        if got.is_floating_point():
            assert_close(got, want, dtype, name, factor=2.0, magnitude=running[name])
        else:
            assert torch.equal(got, want), name


def _running_magnitudes(case, x64):
    """The running statistics after one step computed from absolute values (see
    utils.rel_err): the batch mean of a few conv outputs can cancel to almost nothing
    (3 values per channel summing to 0.019 in a float16 case), and its rounding is that
    of the terms, |x| * |w| (+ |b|); the variance likewise from (|xc| + mean |xc|)^2."""
    plain = block_model(case, torch.float64)  # the buffers before the step
    conv, bn = plain[0], plain[1]
    with torch.no_grad():
        conv.weight.abs_()
        if conv.bias is not None:
            conv.bias.abs_()
        xc = conv(x64.detach().abs())
    axes = (0, 2, 3)
    count = xc.numel() // xc.shape[1]
    factor = 1.0 if case["momentum"] is None else case["momentum"]  # one step: momentum=None averages 1 batch
    mean = xc.mean(axes)
    var = ((xc + mean.view(1, -1, 1, 1)) ** 2).mean(axes) * count / (count - 1)
    return {"1.running_mean": (1 - factor) * bn.running_mean.abs() + factor * mean,
            "1.running_var": (1 - factor) * bn.running_var + factor * var}


def _gradient_magnitudes(plain, x64, upstream64):
    """Each gradient computed from the absolute values of the terms it sums (see
    utils.rel_err): the batch norm's input gradient cancels (exactly to 0 for the conv
    bias, and for everything when a channel has two values), so its error is measured
    against the size of its terms, |scale| (|gz| + mean |gz| + |xhat| mean |gz xhat|)."""
    conv, bn = plain[0], plain[1]
    x_abs = x64.detach().abs().requires_grad_(True)
    w_abs = conv.weight.detach().abs().requires_grad_(True)
    xc = conv(x64.detach()).detach()
    mean, var = xc.mean(dim=(0, 2, 3), keepdim=True), xc.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    rstd = (var + bn.eps).rsqrt()
    xhat = (xc - mean) * rstd
    z = (xhat * bn.weight.detach().view(1, -1, 1, 1) + bn.bias.detach().view(1, -1, 1, 1)).requires_grad_(True)
    (gz,) = torch.autograd.grad(nn.Sequential(*list(plain)[2:])(z), z, upstream64)
    axes = (0, 2, 3)
    terms = (bn.weight.detach().abs().view(1, -1, 1, 1) * rstd
             * (gz.abs() + gz.abs().mean(axes, keepdim=True) + xhat.abs() * (gz * xhat).abs().mean(axes, keepdim=True)))
    conv_abs = copy.deepcopy(conv)
    conv_abs.bias = None
    conv_abs.weight = nn.Parameter(w_abs)
    mag_x, mag_w = torch.autograd.grad(conv_abs(x_abs), [x_abs, conv_abs.weight], terms)
    mags = {"x": mag_x, "0.weight": mag_w, "0.bias": terms.sum(axes),
            "1.weight": (gz * xhat).abs().sum(axes), "1.bias": gz.abs().sum(axes)}
    return mags


def chain(acts=("relu", "silu", "lrelu"), seed=0):
    """Three blocks in a row (the first from a 1 x 1 input: its conv is the
    single-pixel GEMM) and a plain conv head."""
    torch.manual_seed(seed)
    layers = [nn.ConvTranspose2d(5, 6, 4, 1, 0, bias=False), nn.BatchNorm2d(6), ACT_MODULES[acts[0]](0.2),
              nn.ConvTranspose2d(6, 4, 4, 2, 1, bias=False), nn.BatchNorm2d(4, momentum=None), ACT_MODULES[acts[1]](0.2),
              nn.Conv2d(4, 7, 3, 2, 1, bias=True), nn.BatchNorm2d(7), ACT_MODULES[acts[2]](0.2),
              nn.Conv2d(7, 1, 4, 1, 0)]
    return nn.Sequential(*[m for m in layers if m is not None]).double()


def test_chained_blocks_hand_their_sums_to_the_block_before():
    plain = chain()
    blocks, separate = fuse(plain), fuse(plain, blocks=False)
    x = torch.randn(3, 5, 1, 1, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, 1, 1, 1, dtype=torch.float64)
    with fastgan.use_backend("triton"):
        for _ in range(2):  # the second step runs with the links of a used model
            with recording_launches() as launches:
                out, grads = run_(blocks, x, upstream)
            out_s, grads_s = run_(separate, x, upstream)
            want_out, want = run_(plain, x, upstream)
            # Absolute tolerance: the bias gradient of a conv before a batch norm is 0.
            for got, ref in zip((out, *grads), (want_out, *want), strict=True):
                torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)
            for got, ref in zip((out, *grads), (out_s, *grads_s), strict=True):
                torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)
    names = collections.Counter(launch.name for launch in launches)
    # Only the last block (its consumer is a plain conv) launches its own backward sums;
    # the first (single-pixel GEMM conv) keeps its batch-norm launch forward.
    assert names["_bn_grad_sums_kernel"] == 1
    assert names["_bn_grad_input_kernel"] == 0 and names["_bn_stats_kernel"] == 0
    assert names["_bn_normalize_kernel"] == 3
    for a, b in zip(blocks.buffers(), plain.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("single_pixel", [False, True], ids=["gather", "single-pixel"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_running_statistics_updated_by_the_normalize_launch(momentum, single_pixel):
    """float32 running statistics are updated by the block's normalize launch
    (UPDATE_RUNNING), to the bit what nn.BatchNorm's update with PyTorch ops
    (fastgan.functional.update_running_stats) gives from the same batch statistics,
    over three steps (momentum None: the cumulative average), and num_batches_tracked
    counted once a step (by the launch, or on the host for momentum None). 13
    channels: ATen's vectorized and scalar loops both take part. (The float64
    comparison of the statistics is test_block_matches_float64_reference's.)
    single_pixel: a transposed conv of a 1 x 1 input (a DCGAN generator's first
    block), whose conv runs as a GEMM and whose normalize launch computes the batch
    statistics itself (STATS 'own') before updating."""
    torch.manual_seed(5)
    conv = nn.ConvTranspose2d(3, 13, 4, 1, 0, bias=False) if single_pixel else nn.Conv2d(3, 13, 3, 2, 1, bias=False)
    plain = nn.Sequential(conv, nn.BatchNorm2d(13, momentum=momentum), nn.ReLU())
    with torch.no_grad():
        plain[1].running_mean.normal_()
        plain[1].running_var.uniform_(0.5, 2.0)
    fused = fuse(plain)
    norm = fused[1]
    with fastgan.use_backend("triton"):
        for step in range(1, 4):
            want_mean, want_var = norm.running_mean.clone(), norm.running_var.clone()
            x = torch.randn(3, 3, 1, 1) if single_pixel else torch.randn(3, 3, 6, 6)
            with recording_launches() as launches:
                y = fused(x)
            (normalize,) = [launch for launch in launches if launch.name == "_bn_normalize_kernel"]
            assert normalize.kwargs.get("UPDATE_RUNNING") is True
            assert normalize.kwargs["STATS"] == ("own" if single_pixel else "batch")
            # The launch counts the batch, except with momentum None: the host counts
            # first there, since the factor reads the count.
            assert normalize.kwargs.get("COUNT_BATCH", False) is (momentum is not None)
            assert (normalize.args[10] is norm.num_batches_tracked) is (momentum is not None)
            # Where each mode reads or writes the batch statistics (the kernel's docstring).
            batch_mean, batch_var = normalize.args[8:10] if single_pixel else normalize.args[5:7]
            assert batch_mean.shape == (13,) and batch_mean.data_ptr() != norm.running_mean.data_ptr()
            factor = momentum if momentum is not None else 1.0 / step
            fastgan.functional.update_running_stats(want_mean, want_var, batch_mean, batch_var, factor,
                                                    y.numel() // y.shape[1])
            assert norm.num_batches_tracked.item() == step
            assert torch.equal(norm.running_mean, want_mean)
            assert torch.equal(norm.running_var, want_var)


class TwoUses(nn.Module):
    """The output of a block read twice: by the next block and directly."""

    def __init__(self, seq):
        super().__init__()
        self.seq = seq

    def forward(self, x):
        h = self.seq[:3](x)
        return self.seq[3:](h).mean() + h.square().mean()


def test_a_block_output_used_twice_gets_its_own_sums():
    """The consumer's sums are of its part of the gradient only: the producer must see
    that the gradient it receives is another tensor and compute its own."""
    plain = TwoUses(chain(("tanh", "relu", "sigmoid"))[:7])
    fused = TwoUses(fuse(plain.seq))
    x = torch.randn(2, 5, 1, 1, dtype=torch.float64, requires_grad=True)
    with fastgan.use_backend("triton"):
        with recording_launches() as launches:
            got = torch.autograd.grad(fused(x), [x, *fused.parameters()])
    want = torch.autograd.grad(plain(x), [x, *plain.parameters()])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert collections.Counter(launch.name for launch in launches)["_bn_grad_sums_kernel"] == 2


def test_block_is_deterministic():
    plain = chain().float()
    fused = fuse(plain)
    x = torch.randn(4, 5, 1, 1, requires_grad=True)
    upstream = torch.randn(4, 1, 1, 1)
    with fastgan.use_backend("triton"):
        first = run_(fused, x, upstream)
        second = run_(fused, x, upstream)
    for a, b in zip((first[0], *first[1]), (second[0], *second[1]), strict=True):
        assert torch.equal(a, b)


def test_double_backward_through_blocks_matches_plain_pytorch():
    """An R1 penalty (d/dtheta ||dD(x)/dx||^2) of a discriminator made of blocks: the
    backward recomputes the block with the separate differentiable ops."""
    torch.manual_seed(3)
    plain = nn.Sequential(
        nn.Conv2d(3, 4, 3, 2, 1, bias=False), nn.BatchNorm2d(4), nn.LeakyReLU(0.2),
        nn.Conv2d(4, 5, 3, 2, 1, bias=False), nn.BatchNorm2d(5), nn.SiLU(), nn.Conv2d(5, 1, 2, bias=False),
    ).double()
    fused = fuse(plain)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)

    def penalty(model):
        xr = x.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(model(xr).sum(), xr, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), list(model.parameters()))

    with fastgan.use_backend("triton"):
        got = penalty(fused)
    for a, b in zip(got, penalty(plain), strict=True):
        assert_close(a, b, torch.float64, "R1 gradient")


def test_eval_mode_and_reference_backend_run_the_separate_ops():
    plain = chain()
    fused = fuse(plain)
    x = torch.randn(2, 5, 1, 1, dtype=torch.float64)
    # Backend 'reference': the plain ATen composition, bit for bit what
    # Conv2dAct + BatchNormAct2d compute.
    separate = fuse(plain, blocks=False)
    with fastgan.use_backend("reference"):
        assert torch.equal(fused(x), separate(x))
    fused.eval(), separate.eval()  # both counted that batch in their running statistics
    with fastgan.use_backend("triton"), recording_launches() as launches:
        out = fused(x)
    with fastgan.use_backend("reference"):
        assert_close(out, separate(x), torch.float64, "eval output")
    names = {launch.name for launch in launches}
    assert "_bn_normalize_kernel" in names  # the running statistics' normalize, not the block's epilogue


def test_split_blocks_and_convert_sync_batchnorm_undo_the_block():
    fused = fuse(chain())
    state = {k: v.clone() for k, v in fused.state_dict().items()}
    split = copy.deepcopy(fused)
    split_blocks(split)
    assert [type(m) for m in split][:3] == [ConvTranspose2dAct, BatchNormAct2d, nn.Identity]
    assert not any(isinstance(m, (Conv2dBatchNormAct, ConvTranspose2dBatchNormAct, FoldedBatchNorm2d))
                   for m in split.modules())
    assert all(torch.equal(state[k], v) for k, v in split.state_dict().items())
    synced = convert_sync_batchnorm(copy.deepcopy(fused))
    assert not any(isinstance(m, (Conv2dBatchNormAct, ConvTranspose2dBatchNormAct)) for m in synced.modules())


def test_block_rejects_bad_input_before_any_launch():
    fused = fuse(chain())
    with fastgan.use_backend("triton"), recording_launches() as launches:
        with pytest.raises(ValueError, match="input channels"):
            fused[6:](torch.randn(2, 3, 8, 8, dtype=torch.float64))
    assert launches == []


def test_dcgan_step_launch_count_is_at_most_70():
    from fastgan.bench import host

    counted = host.launch_count()
    assert counted["launches_per_step"] <= 70, counted["by_kernel"]
    assert "_bn_stats_kernel" not in counted["by_kernel"] and "_bn_grad_input_kernel" not in counted["by_kernel"]



def test_blocks_trace_under_torch_compile_as_the_separate_ops():
    """torch.compile(fullgraph=True): the block runs the separate torch.library ops
    (no graph break), with the same output, gradients and running statistics."""
    torch.manual_seed(5)
    plain = nn.Sequential(
        nn.ConvTranspose2d(6, 4, 4, 2, 1, bias=False), nn.BatchNorm2d(4), nn.SiLU(),
        nn.Conv2d(4, 7, 3, 2, 1), nn.BatchNorm2d(7), nn.LeakyReLU(0.2), nn.Conv2d(7, 1, 4),
    ).double()
    eager, compiled_model = fuse(plain), fuse(plain)
    compiled = torch.compile(compiled_model, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    want = eager(x).sum()
    want.backward()
    got = compiled(x).sum()
    got.backward()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for (name, p), q in zip(compiled_model.named_parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=name)
    for a, b in zip(compiled_model.buffers(), eager.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
