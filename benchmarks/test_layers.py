"""Kernel level: every conv / transposed conv layer of DCGAN-64 (quick mode: of a
16 px, width-4 DCGAN) with bias + activation, and with batch norm + activation, forward
and forward + backward, per provider."""

import copy

import pytest
import torch

from conftest import DEVICE, QUICK, rel_error, run_benchmark
from fastgan.bench.dcgan import MODULE_PROVIDERS as PROVIDERS, layer_module, layer_specs, provider_context, wrap

if QUICK:
    SPECS, BATCH, DTYPE = layer_specs(16, 4, 8, 3), 2, torch.float32
    # torch.compile costs about 4 s per case on two CPU cores: quick mode compiles one
    # transposed conv and one conv; the full matrix compiles every case.
    COMPILED = {("G1", "bn_act", "fwd_bwd"), ("D1", "bn_act", "fwd_bwd")}
else:
    SPECS, BATCH, DTYPE = layer_specs(64, 64, 100, 3), 256, torch.bfloat16
    COMPILED = None
VARIANTS = ("bias_act", "bn_act")
PHASES = ("fwd", "fwd_bwd")
# Relative error to float64: fp32 (TF32 convolutions allowed on a GPU); bf16 outputs,
# and gradients that went through two bf16 roundings.
TOL = {torch.float32: (1e-4 if DEVICE == "cpu" else 5e-3,) * 2, torch.bfloat16: (2e-2, 5e-2)}


def _case(spec, variant):
    torch.manual_seed(0)
    module = layer_module(spec, bn=variant == "bn_act", bias=variant == "bias_act")
    module.to(DEVICE, memory_format=torch.channels_last)
    gen = torch.Generator(device=DEVICE).manual_seed(1)
    x = torch.randn(BATCH, spec["c_in"], spec["hw"], spec["hw"], device=DEVICE, generator=gen)
    x = x.to(DTYPE).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(spec["name"] != "G0")  # the first layer's input is the latent
    return module, x


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("spec", SPECS, ids=[s["name"] for s in SPECS])
def test_layer(benchmark, spec, variant, phase, provider):
    if provider == "compile" and COMPILED is not None and (spec["name"], variant, phase) not in COMPILED:
        pytest.skip(f"quick mode compiles only {sorted(COMPILED)} (torch.compile costs seconds per case on a CPU)")
    module, x = _case(spec, variant)
    reference = copy.deepcopy(module).double().cpu()
    model = wrap(provider, copy.deepcopy(module))
    params = [p for p in model.parameters()]
    inputs = ([x] if x.requires_grad else []) + params
    autocast = torch.autocast(torch.device(DEVICE).type, dtype=torch.bfloat16, enabled=DTYPE == torch.bfloat16)

    # Correct first: output (and gradients) against float64 on the same weights.
    x64 = x.detach().double().cpu().requires_grad_(x.requires_grad)
    y_ref = reference(x64)
    g = torch.randn(y_ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with provider_context(provider, DEVICE), autocast:
        y = model(x)
        grads = torch.autograd.grad(y, inputs, g.to(DEVICE, y.dtype)) if phase == "fwd_bwd" else ()
    tol_out, tol_grad = TOL[DTYPE]
    assert y.shape == y_ref.shape and rel_error(y, y_ref) < tol_out
    if phase == "fwd_bwd":
        ref_inputs = ([x64] if x.requires_grad else []) + list(reference.parameters())
        for got, want in zip(grads, torch.autograd.grad(y_ref, ref_inputs, g)):
            assert rel_error(got, want) < tol_grad

    grad_out = g.to(DEVICE, y.dtype)

    def run():
        with provider_context(provider, DEVICE), autocast:
            if phase == "fwd":
                with torch.no_grad():
                    model(x)
            else:
                torch.autograd.grad(model(x), inputs, grad_out)

    benchmark.group = f"layer {spec['name']} {variant} {phase}"
    run_benchmark(benchmark, run, layer=spec["name"], variant=variant, phase=phase, provider=provider,
                  batch=BATCH, dtype=str(DTYPE))
