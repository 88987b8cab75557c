"""Exponential moving average of the generator's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """ema <- decay_t * ema + (1 - decay_t) * weights after every generator step, with
    decay_t = min(decay, (1 + t) / (10 + t)) for the t-th update (t = 0: a copy): early
    in training the average follows the weights closely instead of remembering the
    random start. Buffers (batch-norm statistics) are copied, not averaged.

    The update count t lives on the model's device and decay_t is computed there, so an
    update never reads a value back to the host and can be captured in a CUDA graph
    (a Python float decay_t would be frozen into the graph). The arithmetic is that of
    torch.optim.swa_utils.AveragedModel with get_ema_multi_avg_fn(decay_t), which this
    class replaced: decay_t in float64, the lerp weight 1 - decay_t rounded to float32.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        device = next(iter(model.parameters()), torch.empty(0)).device
        self._count = torch.zeros((), dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        t = self._count
        decay_t = torch.where(t == 0, 0.0, torch.clamp((1 + t) / (10 + t), max=self.decay))
        weight = (1 - decay_t).float()  # weight 1 on the first update: lerp gives the weights exactly
        for mine, theirs in zip(self.module.parameters(), model.parameters()):
            if mine.is_floating_point():
                mine.lerp_(theirs.detach(), weight.to(mine.dtype))
            else:
                mine.copy_(theirs)
        for mine, theirs in zip(self.module.buffers(), model.buffers()):
            mine.copy_(theirs)
        t.add_(1)

    @property
    def updates(self) -> int:
        """Updates so far (reads the device counter: not for the training step itself)."""
        return int(self._count)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict, updates: int) -> None:
        self.module.load_state_dict(state)
        self._count.fill_(updates)
