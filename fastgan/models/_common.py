"""Argument checks and small building pieces shared by the model families."""

from __future__ import annotations

from torch import nn

from ..nn import BatchNormAct2d
from .norm import ConditionalBatchNorm

NORMS = ("batch", "none")


def positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def choice(name: str, value, options) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def image_size(size) -> int:
    """A power of two from 8 to 256."""
    if isinstance(size, bool) or not isinstance(size, int) or size not in (8, 16, 32, 64, 128, 256):
        raise ValueError(f"size must be a power of two from 8 to 256, got {size!r}")
    return size


class NormAct(nn.Module):
    """The normalisation + activation after a linear/conv layer: batch norm with a fused
    activation, conditional batch norm (reads the condition embedding), or nothing
    (then the layer before fuses the activation itself and this is the identity)."""

    def __init__(self, channels: int, norm: str, act: str, cond_dim: int | None = None):
        super().__init__()
        self.conditional = cond_dim is not None
        if norm == "none":
            self.layer = None
        elif self.conditional:
            self.layer = ConditionalBatchNorm(channels, cond_dim, act=act)
        else:
            self.layer = BatchNormAct2d(channels, act=act)

    def forward(self, x, embedding=None):
        if self.layer is None:
            return x
        if self.conditional:
            return self.layer(x, embedding)
        if x.dim() == 2:
            return self.layer(x[:, :, None, None])[:, :, 0, 0]
        return self.layer(x)


class Block(nn.Module):
    """A linear/conv layer followed by its NormAct."""

    def __init__(self, layer: nn.Module, norm: NormAct):
        super().__init__()
        self.layer = layer
        self.norm = norm

    def forward(self, x, embedding=None):
        return self.norm(self.layer(x), embedding)
