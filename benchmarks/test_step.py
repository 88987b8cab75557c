"""Step level: a full DCGAN training step (D on real, D on fake, G through D, both
Adam updates) per provider, unconditional and class-conditional, float32 and bf16,
batch 64 and 256 at 64 px (quick mode: batch 2 at 16 px, width 4). `fastgan bench`
prints the same comparison as a table with MFU and peak memory."""

import itertools

import pytest
import torch

from conftest import DEVICE, QUICK, run_benchmark
from fastgan.bench import dcgan

if QUICK:
    SHAPE, BATCHES = dict(size=16, width=4, latent=8), [2]
    # torch.compile of G and D costs several seconds on a CPU: quick mode compiles the
    # float32 configurations only.
    COMPILED = {("none", "float32"), ("class", "float32")}
else:
    SHAPE, BATCHES, COMPILED = dict(size=64, width=64, latent=100), [64, 256], None
# First-step D loss of a provider against eager's on the same weights and inputs.
TOL = {"float32": 1e-4 if DEVICE == "cpu" else 5e-3, "bfloat16": 3e-2}


@pytest.mark.parametrize("provider", dcgan.PROVIDERS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("cond", ["none", "class"])
def test_training_step(benchmark, cond, dtype, batch, provider):
    if dcgan.skip_reason(provider, DEVICE):
        pytest.skip(dcgan.skip_reason(provider, DEVICE))
    if provider.startswith("compile") and COMPILED is not None and (cond, dtype) not in COMPILED:
        pytest.skip(f"quick mode compiles only {sorted(COMPILED)} (torch.compile costs seconds per case on a CPU)")
    cfg = dcgan.StepConfig(batch=batch, dtype=dtype, cond=cond, device=DEVICE, **SHAPE)
    inputs = dcgan.make_inputs(cfg)
    G, D = dcgan.make_models(cfg)
    step = dcgan.GANStep(provider, G, D, cfg)
    if provider == "fastgan" and dtype == "bfloat16" and dcgan.fastgan_backend(DEVICE) == "triton" and DEVICE == "cpu":
        # Triton's interpreter has no bfloat16 math (it returns values near 1e10): the
        # backend must refuse it with a clear error rather than train on garbage.
        with pytest.raises(RuntimeError, match="no bfloat16 math"):
            step(*inputs[0])
        return
    before = [p.detach().clone() for p in itertools.chain(step.G.parameters(), step.D.parameters())]
    d_loss, g_loss = step(*inputs[0])

    eager = dcgan.GANStep("eager", *dcgan.make_models(cfg), cfg)
    d_eager, g_eager = eager(*inputs[0])
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    # Same weights, same batch: the D loss is computed before any update.
    assert abs(d_loss.item() - d_eager.item()) <= TOL[dtype] * abs(d_eager.item())
    after = list(itertools.chain(step.G.parameters(), step.D.parameters()))
    assert len(after) == len(before)
    for p0, p1 in zip(before, after):
        assert torch.isfinite(p1).all() and not torch.equal(p0, p1)  # both optimizers stepped every tensor

    batches = itertools.cycle(inputs)
    benchmark.group = f"step {cond} {dtype} batch {batch}"
    run_benchmark(benchmark, lambda: step(*next(batches)), cond=cond, dtype=dtype, batch=batch, provider=provider,
                  **SHAPE)
    benchmark.extra_info["images_per_step"] = batch
