"""Exponential moving average of the generator's weights (torch.optim.swa_utils)."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMA:
    """ema <- decay_t * ema + (1 - decay_t) * weights after every generator step, with
    decay_t = min(decay, (1 + t) / (10 + t)) for the t-th update: early in training the
    average follows the weights closely instead of remembering the random start.
    Buffers (batch-norm statistics) are copied, not averaged."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.averaged = AveragedModel(model, multi_avg_fn=self._average, use_buffers=False)
        self.averaged.module.eval().requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    def _average(self, ema_params, params, n_averaged):
        t = int(n_averaged)
        get_ema_multi_avg_fn(min(self.decay, (1 + t) / (10 + t)))(ema_params, params, n_averaged)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)
        for mine, theirs in zip(self.module.buffers(), model.buffers()):
            mine.copy_(theirs)

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict, updates: int) -> None:
        self.module.load_state_dict(state)
        self.averaged.n_averaged.fill_(updates)
