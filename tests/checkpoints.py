"""Small checkpoints written by the real Trainer, for the export tests (tests/test_export.py)
and the native sampler's end-to-end test (tests/native/check_sampler.py)."""

from __future__ import annotations

import torch

from fastgan.data import ArrayData
from fastgan.models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from fastgan.train import Trainer


def randomize(model, seed=1, scale=0.3):
    """Random weights and batch-norm statistics: a fresh model's zero-initialised
    conditional modulation would make every condition give the same samples."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
    return model


def _conditions(kind, size, n, gen):
    if kind == "none":
        return None
    if kind == "attributes":
        return (torch.rand(n, size, generator=gen) > 0.5).float()
    return torch.randint(size, (n,), generator=gen)


def image_models(cond_kind="label", cond_size=10, cond_mode="cbn", latent_dim=8):
    torch.manual_seed(0)
    size = cond_size if cond_kind != "none" else 0
    g = DCGANGenerator(8, 1, width=4, latent_dim=latent_dim, cond_kind=cond_kind, cond_size=size,
                       cond_mode=cond_mode, cond_dim=8)
    d = DCGANDiscriminator(8, 1, width=4, cond_kind=cond_kind, cond_size=size)
    return g, d


def vector_models(cond_kind="attributes", cond_size=3, cond_mode="concat", latent_dim=4, norm="none"):
    torch.manual_seed(0)
    size = cond_size if cond_kind != "none" else 0
    g = MLPGenerator(5, latent_dim, hidden=(16,), norm=norm, out_act="sigmoid", cond_kind=cond_kind, cond_size=size,
                     cond_mode=cond_mode, cond_dim=4)
    d = MLPDiscriminator(5, hidden=(16,), cond_kind=cond_kind, cond_size=size)
    return g, d


def write_checkpoint(path, generator, discriminator, cond_names=None, ema=0.9):
    """A checkpoint of `generator` with randomised weights, as `fastgan train` writes it.
    Its EMA generator and its trained generator differ (the trained one is moved after
    the EMA copy was taken), so a test can tell which of the two was used."""
    randomize(generator)
    gen = torch.Generator().manual_seed(0)
    shape = (generator.channels, generator.size, generator.size) if hasattr(generator, "size") else (generator.out_features,)
    x = torch.rand(16, *shape, generator=gen) * 2 - 1
    kind, size = generator.cond_kind, generator.cond_size
    data = ArrayData(x, _conditions(kind, size, 16, gen), cond_kind=kind, cond_size=size, cond_names=cond_names)
    trainer = Trainer(generator, discriminator, data, ema=ema, progress=False, device="cpu",
                      config={"cond_names": cond_names})
    randomize(trainer.G, seed=2, scale=0.1)
    trainer.save(path)
    return path
