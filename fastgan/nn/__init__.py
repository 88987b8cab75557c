"""Fused modules (drop-in subclasses of the torch.nn layers they fuse) and fuse(model)."""

from .fuse import fuse
from .modules import BatchNormAct1d, BatchNormAct2d, Conv2dAct, ConvTranspose2dAct, GANLoss, LinearAct

__all__ = ["BatchNormAct1d", "BatchNormAct2d", "Conv2dAct", "ConvTranspose2dAct", "GANLoss", "LinearAct", "fuse"]
