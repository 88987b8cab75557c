"""Conditional batch normalisation: batch norm without its own affine, then a scale
and shift computed per sample from the condition (de Vries et al. 2017; Miyato &
Koyama 2018 for GANs)."""

from __future__ import annotations

import torch
from torch import nn

from ..nn import BatchNormAct2d, LinearAct
from ..reference.activations import activation as apply_activation


class ConditionalBatchNorm(nn.Module):
    """act(BN(x) * (1 + gamma(e)) + beta(e)) for x [N, C] or [N, C, H, W] and a
    condition embedding e [N, cond_dim].

    gamma and beta start at zero, so an untrained layer is plain batch norm."""

    def __init__(self, num_features: int, cond_dim: int, *, act: str = "relu", alpha: float | None = None):
        super().__init__()
        # The per-sample affine cannot be folded into the fused normalisation, so the
        # norm runs without activation and the activation follows the modulation.
        self.norm = BatchNormAct2d(num_features, affine=False)
        self.modulation = LinearAct(cond_dim, 2 * num_features)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
        self.act = act
        self.alpha = 0.2 if alpha is None else alpha

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        flat = x.dim() == 2
        h = self.norm(x[:, :, None, None] if flat else x)
        gamma, beta = self.modulation(embedding).chunk(2, dim=1)
        h = h * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        h = apply_activation(h, self.act, self.alpha)
        return h[:, :, 0, 0] if flat else h
