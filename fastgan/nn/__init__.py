"""Fused modules (drop-in subclasses of the torch.nn layers they fuse), fuse(model), and
convert_sync_batchnorm(model) for DDP."""

from .fuse import fuse
from .modules import (
    BatchNormAct1d, BatchNormAct2d, Conv2dAct, Conv2dBatchNormAct, ConvTranspose2dAct, ConvTranspose2dBatchNormAct,
    FoldedBatchNorm2d, GANLoss, LinearAct,
)
from .sequential import FusedSequential
from .sync import SyncBatchNormAct, convert_sync_batchnorm

__all__ = [
    "BatchNormAct1d", "BatchNormAct2d", "Conv2dAct", "Conv2dBatchNormAct", "ConvTranspose2dAct",
    "ConvTranspose2dBatchNormAct", "FoldedBatchNorm2d", "FusedSequential", "GANLoss", "LinearAct", "SyncBatchNormAct",
    "convert_sync_batchnorm", "fuse",
]
