"""Kernel level: the adversarial discriminator loss (forward + backward) and batch norm
+ activation (forward + backward, training mode), per provider. The eager baselines
are bench_loss_bn.py's: what a PyTorch user writes."""

import copy

import pytest
import torch

from bench_loss_bn import KINDS, bn_shape, eager_d_loss, fused_d_loss
from conftest import DEVICE, QUICK, rel_error, run_benchmark
from fastgan.bench.dcgan import MODULE_PROVIDERS as PROVIDERS, provider_context, wrap
from fastgan.nn import BatchNormAct2d

if QUICK:
    LOSS_SIZES, BN_SIZES, DTYPE = [4096], [4096], torch.float32
    LOSS_KINDS = ("nonsaturating", "hinge")
    # torch.compile costs seconds per case on a CPU: quick mode compiles one of each.
    COMPILED = {("loss", "nonsaturating"), ("bn", "lrelu")}
else:
    LOSS_SIZES, BN_SIZES, DTYPE = [2**16, 2**20, 2**24], [2**16, 2**20, 2**24], torch.bfloat16
    LOSS_KINDS, COMPILED = KINDS, None
TOL = 1e-5 if DTYPE == torch.float32 else 2e-2


def _skip_compile(provider, key):
    if provider == "compile" and COMPILED is not None and key not in COMPILED:
        pytest.skip(f"quick mode compiles only {sorted(COMPILED)} (torch.compile costs seconds per case on a CPU)")


def _loss_fn(provider, kind, n):
    eager = eager_d_loss(kind, n, DTYPE, DEVICE)
    if provider == "fastgan":
        return fused_d_loss(kind)
    return torch.compile(eager) if provider == "compile" else eager


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("n", LOSS_SIZES)
@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_discriminator_loss(benchmark, kind, n, provider):
    _skip_compile(provider, ("loss", kind))
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    r = (torch.randn(n, device=DEVICE, generator=gen) * 3).to(DTYPE).requires_grad_()
    f = (torch.randn(n, device=DEVICE, generator=gen) * 3).to(DTYPE).requires_grad_()
    fn = _loss_fn(provider, kind, n)
    with provider_context(provider, DEVICE):
        loss = fn(r, f)
        grads = torch.autograd.grad(loss, (r, f))
    r64, f64 = (t.detach().double().cpu().requires_grad_() for t in (r, f))
    ref = eager_d_loss(kind, n, torch.float64, "cpu")(r64, f64)
    assert rel_error(loss, ref) < TOL
    for got, want in zip(grads, torch.autograd.grad(ref, (r64, f64))):
        assert rel_error(got, want) < TOL

    def run():
        with provider_context(provider, DEVICE):
            torch.autograd.grad(fn(r, f), (r, f))

    benchmark.group = f"discriminator_loss {kind} {n}"
    run_benchmark(benchmark, run, op="discriminator_loss", kind=kind, elements=2 * n, provider=provider)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("elements", BN_SIZES)
@pytest.mark.parametrize("act", ["relu", "lrelu"])
def test_batch_norm_act(benchmark, act, elements, provider):
    _skip_compile(provider, ("bn", act))
    shape = bn_shape(elements)
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    x = torch.randn(shape, device=DEVICE, generator=gen).to(DTYPE).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    module = torch.nn.Sequential(torch.nn.BatchNorm2d(shape[1]), torch.nn.LeakyReLU(0.2) if act == "lrelu" else torch.nn.ReLU())
    torch.nn.init.uniform_(module[0].weight, 0.5, 1.5)
    torch.nn.init.normal_(module[0].bias)
    module.to(DEVICE)
    reference = copy.deepcopy(module).double().cpu()
    if provider == "fastgan":  # fuse() fuses runs that start at a conv; a lone norm + act is the module itself
        model = BatchNormAct2d(shape[1], act=act, alpha=0.2 if act == "lrelu" else None).to(DEVICE)
        model.load_state_dict(module[0].state_dict())
    else:
        model = wrap(provider, module)
    g = torch.randn(shape, device=DEVICE, generator=gen).to(DTYPE)
    with provider_context(provider, DEVICE):
        y = model(x)
        grads = torch.autograd.grad(y, [x, *model.parameters()], g)
    x64 = x.detach().double().cpu().requires_grad_()
    y64 = reference(x64)
    assert rel_error(y, y64) < TOL
    for got, want in zip(grads, torch.autograd.grad(y64, [x64, *reference.parameters()], g.double().cpu())):
        assert rel_error(got, want) < 10 * TOL  # batch-norm input gradients cancel: a few more ulps

    def run():
        with provider_context(provider, DEVICE):
            torch.autograd.grad(model(x), [x, *model.parameters()], g)

    benchmark.group = f"batch_norm_act {act} {list(shape)}"
    run_benchmark(benchmark, run, op="batch_norm_act", act=act, shape=list(shape), provider=provider)
