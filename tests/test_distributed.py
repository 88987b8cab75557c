"""DDP: two processes on the CPU (gloo, started by torchrun) end with the same weights as
one process training on the same global batch.

Both models are free of batch norm: batch statistics are per process under DDP (as
with any DDP model without SyncBatchNorm), so a model with batch norm legitimately
differs between 1 and 2 processes. Everything else is the same computation: each
process takes its half of the same global batch and noise, and DDP averages the
gradients, which equals the gradient of the global mean loss.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastgan.data import ArrayData
from fastgan.models import DCGANDiscriminator, DCGANGenerator

HERE = Path(__file__).resolve().parent
STEPS = 3
# R1 (double backward through DDP), n_critic, EMA and accumulation (no_sync) included.
DDP_SETTINGS = dict(batch_size=8, n_critic=2, r1=1.0, r1_interval=2, ema=0.9, loss="hinge", seed=3,
                    checkpoint_every=STEPS, sample_every=STEPS, log_every=1, progress=False, device="cpu")


def data():
    gen = torch.Generator().manual_seed(0)
    return ArrayData(torch.rand(20, 1, 8, 8, generator=gen) * 2 - 1, torch.arange(20) % 4, cond_kind="label", cond_size=4)


def models():
    torch.manual_seed(0)
    g = DCGANGenerator(8, 1, width=4, latent_dim=4, norm="none", cond_kind="label", cond_size=4, cond_mode="concat", cond_dim=4)
    d = DCGANDiscriminator(8, 1, width=4, norm="none", extra_layers=1, cond_kind="label", cond_size=4)
    return g, d


@pytest.mark.parametrize("accumulate", [1, 2])
def test_two_processes_match_one(tmp_path, accumulate):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(HERE / "ddp_worker.py"), str(tmp_path / "ddp"), str(accumulate)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)

    from fastgan import Trainer

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = Trainer(*models(), data(), run_dir=tmp_path / "one", **DDP_SETTINGS)
        single.fit(STEPS)
    finally:
        torch.set_num_threads(before)
    one = single.state_dict()
    initial_g, _ = models()
    assert ddp["step"] == STEPS and ddp["d_steps"] == STEPS * 2
    for group in ("generator", "discriminator", "generator_ema"):
        for name, value in one[group].items():
            assert torch.allclose(ddp[group][name], value, rtol=1e-4, atol=1e-6), f"{group}.{name}"
    # The weights did move: the agreement is not that of two untouched models.
    assert not torch.allclose(ddp["generator"]["to_image.weight"], initial_g.state_dict()["to_image.weight"], atol=1e-4)
