"""Training: the Trainer, its checkpoints, EMA and distributed setup."""

from .checkpoint import load as load_checkpoint
from .checkpoint import load_generator, save_atomic
from .ema import EMA
from .trainer import NonFiniteLossError, Trainer

__all__ = ["EMA", "NonFiniteLossError", "Trainer", "load_checkpoint", "load_generator", "save_atomic"]
