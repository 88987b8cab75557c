"""DCGAN-style generator and discriminator (Radford et al. 2016) for square images of 8
to 256 pixels, with optional conditioning.

With size=64, channels=3, width=64, latent_dim=100, norm='batch' and no condition the
layers are those of the pytorch/examples DCGAN (tests/dcgan.py), built from fastgan's
fused blocks; the discriminator returns logits (the example's final sigmoid lives in
the loss, which takes logits).

Channels: the generator starts from a 4x4 map of min(width * 2^(k-1), max_channels)
channels (k = log2(size) - 2 upsamplings) and halves them at each doubling of
resolution; the discriminator mirrors it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..nn import Conv2dAct, ConvTranspose2dAct
from ._common import NORMS, Block, NormAct, choice, image_size, positive_int
from .condition import Condition, check_condition, embed_for_generator, no_condition_given

G_COND_MODES = ("cbn", "concat")


def _channel_plan(size: int, width: int, max_channels: int | None) -> list[int]:
    """Channels at resolutions 4, 8, ..., size/2 (the generator's order)."""
    stages = int(math.log2(size)) - 2
    cap = max_channels if max_channels is not None else 8 * width
    return [min(width * 2 ** (stages - 1 - i), cap) for i in range(stages)]


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: conv weights N(0, 0.02), norm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """G(z, c) -> images [N, channels, size, size] in [-1, 1] (tanh).

    z: [N, latent_dim] (or [N, latent_dim, 1, 1]); c: the condition (see Condition),
    None when cond_kind='none'. cond_mode 'cbn' feeds the condition to every batch
    norm (conditional batch norm), 'concat' appends its embedding to z.
    extra_layers adds 3x3 conv + norm + ReLU blocks at the last hidden resolution
    (capacity for small images).
    """

    def __init__(
        self, size: int = 64, channels: int = 3, width: int = 64, latent_dim: int = 100, *,
        max_channels: int | None = None, extra_layers: int = 0, norm: str = "batch",
        cond_kind: str = "none", cond_size: int = 0, cond_mode: str = "cbn", cond_dim: int = 128,
    ):
        super().__init__()
        self.size = image_size(size)
        self.channels = positive_int("channels", channels)
        self.width = positive_int("width", width)
        self.latent_dim = positive_int("latent_dim", latent_dim)
        self.max_channels = None if max_channels is None else positive_int("max_channels", max_channels)
        self.extra_layers = positive_int("extra_layers", extra_layers, minimum=0)
        self.norm = choice("norm", norm, NORMS)
        self.cond_kind, self.cond_size = check_condition(cond_kind, cond_size)
        self.cond_mode = choice("cond_mode", cond_mode, G_COND_MODES)
        self.cond_dim = positive_int("cond_dim", cond_dim)
        if self.cond_kind != "none" and self.cond_mode == "cbn" and self.norm == "none":
            raise ValueError("cond_mode='cbn' needs norm='batch' (conditional batch norm); use cond_mode='concat' with norm='none'")

        conditional = self.cond_kind != "none"
        self.condition = Condition(self.cond_kind, self.cond_size, self.cond_dim) if conditional else None
        norm_cond_dim = self.cond_dim if conditional and self.cond_mode == "cbn" else None
        in_features = self.latent_dim + (self.cond_dim if conditional and self.cond_mode == "concat" else 0)

        plan = _channel_plan(self.size, self.width, self.max_channels)
        fused_act = "relu" if self.norm == "none" else "linear"
        bias = self.norm == "none"
        blocks = []
        prev = in_features
        for i, ch in enumerate(plan):
            stride, padding = (1, 0) if i == 0 else (2, 1)
            conv = ConvTranspose2dAct(prev, ch, 4, stride, padding, bias=bias, act=fused_act)
            blocks.append(Block(conv, NormAct(ch, self.norm, "relu", norm_cond_dim)))
            prev = ch
        for _ in range(self.extra_layers):
            conv = Conv2dAct(prev, prev, 3, 1, 1, bias=bias, act=fused_act)
            blocks.append(Block(conv, NormAct(prev, self.norm, "relu", norm_cond_dim)))
        self.blocks = nn.ModuleList(blocks)
        self.to_image = ConvTranspose2dAct(prev, self.channels, 4, 2, 1, bias=False, act="tanh")
        dcgan_init(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() == 4 and z.shape[2:] == (1, 1):
            z = z.flatten(1)
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be [N, {self.latent_dim}], got shape {tuple(z.shape)}")
        z, embedding = embed_for_generator(self.condition, self.cond_mode, z, c)
        h = z[:, :, None, None]
        for block in self.blocks:
            h = block(h, embedding)
        return self.to_image(h)

    def config(self) -> dict:
        """The constructor's arguments as plain data (stored in checkpoints)."""
        return dict(
            model="DCGANGenerator", size=self.size, channels=self.channels, width=self.width,
            latent_dim=self.latent_dim, max_channels=self.max_channels, extra_layers=self.extra_layers,
            norm=self.norm, cond_kind=self.cond_kind, cond_size=self.cond_size, cond_mode=self.cond_mode,
            cond_dim=self.cond_dim,
        )


class DCGANDiscriminator(nn.Module):
    """D(x, c) -> logits [N / pack] for images [N, channels, size, size].

    Conditional by projection (Miyato & Koyama 2018): logit = head(h) + <embed(c), sum_hw h>
    with h the last 4x4 feature map. The first layer has no norm (as in DCGAN).
    mbstd_group > 0 appends the minibatch standard deviation (Karras et al. 2018) to h
    before the head: the mean over features of the std across groups of that many
    samples, one extra channel, so D can tell a batch of too-similar samples from a
    real one.
    pack > 1 is PacGAN (Lin et al. 2018): D judges packs of that many consecutive
    samples, stacked along channels, and returns one logit per pack; the projection
    term sums the embeddings of the pack's conditions. A generator that repeats itself
    makes packs that real data does not, which is how packing penalises dropped modes.
    """

    def __init__(
        self, size: int = 64, channels: int = 3, width: int = 64, *,
        max_channels: int | None = None, extra_layers: int = 0, norm: str = "batch",
        cond_kind: str = "none", cond_size: int = 0, mbstd_group: int = 0, pack: int = 1,
    ):
        super().__init__()
        self.size = image_size(size)
        self.channels = positive_int("channels", channels)
        self.width = positive_int("width", width)
        self.max_channels = None if max_channels is None else positive_int("max_channels", max_channels)
        self.extra_layers = positive_int("extra_layers", extra_layers, minimum=0)
        self.norm = choice("norm", norm, NORMS)
        self.cond_kind, self.cond_size = check_condition(cond_kind, cond_size)
        self.mbstd_group = positive_int("mbstd_group", mbstd_group, minimum=0)
        self.pack = positive_int("pack", pack)

        plan = list(reversed(_channel_plan(self.size, self.width, self.max_channels)))
        fused_act = "lrelu" if self.norm == "none" else "linear"
        bias = self.norm == "none"
        first = Conv2dAct(self.channels * self.pack, plan[0], 4, 2, 1, bias=bias, act="lrelu")
        blocks = [Block(first, NormAct(plan[0], "none", "lrelu"))]
        for _ in range(self.extra_layers):
            conv = Conv2dAct(plan[0], plan[0], 3, 1, 1, bias=bias, act=fused_act)
            blocks.append(Block(conv, NormAct(plan[0], self.norm, "lrelu")))
        for prev, ch in zip(plan[:-1], plan[1:]):
            blocks.append(Block(Conv2dAct(prev, ch, 4, 2, 1, bias=bias, act=fused_act), NormAct(ch, self.norm, "lrelu")))
        self.blocks = nn.ModuleList(blocks)
        self.head = Conv2dAct(plan[-1] + (1 if self.mbstd_group else 0), 1, 4, 1, 0, bias=False)
        self.projection = None
        if self.cond_kind != "none":
            self.projection = Condition(self.cond_kind, self.cond_size, plan[-1])
        dcgan_init(self)
        if self.projection is not None:
            nn.init.xavier_uniform_(self.projection.embed.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last 4x4 feature map, one per pack."""
        if x.dim() != 4 or x.shape[1:] != (self.channels, self.size, self.size):
            raise ValueError(
                f"x must be [N, {self.channels}, {self.size}, {self.size}] images, got shape {tuple(x.shape)}"
            )
        if x.shape[0] % self.pack:
            raise ValueError(f"the batch of {x.shape[0]} images does not split into packs of pack={self.pack}")
        h = x.reshape(x.shape[0] // self.pack, self.pack * self.channels, self.size, self.size) if self.pack > 1 else x
        for block in self.blocks:
            h = block(h)
        return h

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        logits = self.head(minibatch_std(h, self.mbstd_group) if self.mbstd_group else h).flatten()
        if self.projection is None:
            no_condition_given(c, "this discriminator")
            return logits
        embedding = self.projection(self.projection.check(c, x.shape[0]))
        if self.pack > 1:
            embedding = embedding.reshape(-1, self.pack, embedding.shape[1]).sum(dim=1)
        return logits + (embedding.to(h.dtype) * h.sum(dim=(2, 3))).sum(dim=1).to(logits.dtype)

    def config(self) -> dict:
        return dict(
            model="DCGANDiscriminator", size=self.size, channels=self.channels, width=self.width,
            max_channels=self.max_channels, extra_layers=self.extra_layers, norm=self.norm,
            cond_kind=self.cond_kind, cond_size=self.cond_size, mbstd_group=self.mbstd_group, pack=self.pack,
        )


def minibatch_std(h: torch.Tensor, group: int) -> torch.Tensor:
    """h [N, C, H, W] with one more channel: for each sample, the mean over C, H, W of the
    standard deviation across its group (consecutive samples; the group size is the
    largest divisor of N up to `group`, so any batch size works)."""
    n, c, height, width = h.shape
    g = max(d for d in range(1, min(group, n) + 1) if n % d == 0)
    grouped = h.float().reshape(g, n // g, c, height, width)  # sample i is in group i % (n // g)
    std = (grouped.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [n // g]
    feature = std.repeat(g)[:, None, None, None].expand(n, 1, height, width).to(h.dtype)
    return torch.cat([h, feature], dim=1)
