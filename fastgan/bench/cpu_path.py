"""What fastgan costs on a CPU: a fused model on the reference backend against the same
model in plain torch.nn, one training step each, steps interleaved.

Two cases:
- `dcgan`: the pytorch/examples DCGAN (nz=100, ngf=ndf=32, 64x64x3, batch 16, BCELoss on
  the sigmoid output, Adam), plain against fastgan.nn.fuse of a copy, as a new user
  tries it: the training code is unchanged, only the model is fused.
- `conditional`: the models `fastgan train` builds (the digits preset: a label-
  conditional DCGAN with conditional batch norm in G and projection in D; the toy
  preset: the conditional MLPs), fused as built, against a plain copy in which every
  fused module is its torch.nn layer followed by the activation (`plain_copy`); the
  preset's hinge loss, Adam.

Both models of a case start from the same weights and see the same batches; the ratio
reported is the median fused step time over the median plain step time (target: <=
1.05 for the DCGAN, <= 1.1 for the conditional models).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from .._backend import use_backend
from ..reference.activations import bias_act


# ------------------------------------------------------------------ the models
def examples_generator(nz=100, ngf=32, nc=3) -> nn.Sequential:
    """pytorch/examples' DCGAN generator (64x64 output)."""
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
    )


def examples_discriminator(ndf=32, nc=3) -> nn.Sequential:
    """pytorch/examples' DCGAN discriminator (sigmoid output)."""
    return nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
    )


class Epilogue(nn.Module):
    """clamp(act(z) * gain): the activation a plain model applies after its layer."""

    def __init__(self, act, alpha, gain, clamp):
        super().__init__()
        self.act, self.alpha, self.gain, self.clamp = act, alpha, gain, clamp

    def forward(self, z):
        return bias_act(z, self.act, self.alpha, self.gain, self.clamp)


def _plain_twin(module: nn.Module) -> nn.Module | None:
    from ..nn import BatchNormAct2d, Conv2dAct, ConvTranspose2dAct, LinearAct

    for fused, plain in ((Conv2dAct, nn.Conv2d), (ConvTranspose2dAct, nn.ConvTranspose2d), (LinearAct, nn.Linear),
                         (BatchNormAct2d, nn.BatchNorm2d)):
        if isinstance(module, fused):
            layer = copy.deepcopy(module)
            layer.__class__ = plain  # the torch.nn layer it subclasses: same parameters and buffers
            gain = getattr(module, "gain", 1.0)
            clamp = getattr(module, "clamp", None)
            if module.act == "linear" and gain == 1.0 and clamp is None:
                return layer
            return nn.Sequential(layer, Epilogue(module.act, module.alpha, gain, clamp))
    return None


def plain_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` in which every fused fastgan module is its torch.nn layer
    followed by the activation in plain PyTorch (same weights)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            twin = _plain_twin(child)
            if twin is not None:
                setattr(parent, name, twin)
    return model


# ------------------------------------------------------------------ the steps
class ExamplesStep:
    """pytorch/examples' DCGAN training step (BCELoss on D's sigmoid output)."""

    def __init__(self, G, D, nz):
        self.G, self.D, self.nz = G, D, nz
        self.criterion = nn.BCELoss()
        self.opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def __call__(self, real, noise):
        self.D.zero_grad()
        out = self.D(real).view(-1)
        err_real = self.criterion(out, torch.ones_like(out))
        err_real.backward()
        fake = self.G(noise)
        out = self.D(fake.detach()).view(-1)
        err_fake = self.criterion(out, torch.zeros_like(out))
        err_fake.backward()
        self.opt_d.step()
        self.G.zero_grad()
        out = self.D(fake).view(-1)
        err_g = self.criterion(out, torch.ones_like(out))
        err_g.backward()
        self.opt_g.step()
        return (err_real + err_fake).detach(), err_g.detach()


class ConditionalStep:
    """The alternating hinge-loss step of `fastgan train` (D then G, Adam)."""

    def __init__(self, G, D):
        self.G, self.D = G, D
        self.opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def __call__(self, real, c, z):
        fake = self.G(z, c)
        d_loss = F.relu(1 - self.D(real, c)).mean() + F.relu(1 + self.D(fake.detach(), c)).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        g_loss = -self.D(fake, c).mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return d_loss.detach(), g_loss.detach()


def _examples_case(batch: int, width: int):
    from ..nn import fuse

    torch.manual_seed(0)
    G, D = examples_generator(ngf=width), examples_discriminator(ndf=width)
    fused = ExamplesStep(fuse(copy.deepcopy(G)), fuse(copy.deepcopy(D)), 100)
    plain = ExamplesStep(G, D, 100)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.rand(batch, 3, 64, 64, generator=gen) * 2 - 1, torch.randn(batch, 100, 1, 1, generator=gen))
               for _ in range(2)]
    return plain, fused, batches


def _conditional_case(preset: str, batch: int):
    from ..models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
    from ..train.recipes import PRESETS

    opts = PRESETS[preset]
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    if preset == "digits":  # 8x8 grey digits, 10 labels
        common = dict(size=8, channels=1, width=opts["width"], extra_layers=opts["extra_layers"], cond_kind="label",
                      cond_size=10)
        G = DCGANGenerator(latent_dim=opts["latent"], norm=opts["g_norm"], cond_mode=opts["g_cond"], **common)
        D = DCGANDiscriminator(norm=opts["d_norm"], **common)
        sample = (1, 8, 8)
    else:  # 2-D points, 8 mixture components as labels
        hidden = (opts["width"],) * 3
        G = MLPGenerator(2, opts["latent"], hidden, norm=opts["g_norm"], cond_mode=opts["g_cond"], cond_kind="label",
                         cond_size=8)
        D = MLPDiscriminator(2, hidden, cond_kind="label", cond_size=8)
        sample = (2,)
    classes = 10 if preset == "digits" else 8
    plain = ConditionalStep(plain_copy(G), plain_copy(D))
    fused = ConditionalStep(G, D)
    batches = [(torch.rand(batch, *sample, generator=gen) * 2 - 1, torch.randint(classes, (batch,), generator=gen),
                torch.randn(batch, opts["latent"], generator=gen)) for _ in range(2)]
    return plain, fused, batches


CASES = ("dcgan", "digits", "toy")


def make_case(name: str, *, batch: int | None = None, width: int = 32):
    """(plain step, fused step, input batches) of case `name`."""
    if name == "dcgan":
        return _examples_case(batch or 16, width)
    if name in ("digits", "toy"):
        from ..train.recipes import PRESETS

        return _conditional_case(name, batch or PRESETS[name]["batch_size"])
    raise ValueError(f"case must be one of {CASES}, got {name!r}")


def measure_case(name: str, *, steps: int = 10, warmup: int = 2, threads: int = 2, batch: int | None = None,
                 width: int = 32) -> dict:
    """Median step time of the plain and the fused model on the reference backend,
    steps interleaved (plain, fused, plain, ...), with `threads` PyTorch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        plain, fused, batches = make_case(name, batch=batch, width=width)
        times = {"plain": [], "fused": []}
        first = {}
        with use_backend("reference"):
            for i in range(warmup + steps):
                inputs = batches[i % len(batches)]
                for label, step in (("plain", plain), ("fused", fused)):
                    start = time.perf_counter()
                    losses = step(*inputs)
                    elapsed = (time.perf_counter() - start) * 1e3
                    if i == 0:
                        first[label] = [float(v) for v in losses]
                    if i >= warmup:
                        times[label].append(elapsed)
    finally:
        torch.set_num_threads(before)
    plain_ms, fused_ms = statistics.median(times["plain"]), statistics.median(times["fused"])
    return {"case": name, "threads": threads, "steps": steps, "plain_ms": plain_ms, "fused_ms": fused_ms,
            "ratio": fused_ms / plain_ms, "first_losses": first, "samples_ms": times}
