"""MLP generator and discriminator for vector data: 2-D toy distributions, user
interaction profiles (one value per item), tabular attributes.

Conditioning as in the image models: the generator appends the condition's embedding
to z ('concat') or modulates each hidden batch norm ('cbn'); the discriminator adds a
projection term ('projection') or reads the embedding next to x ('concat', the
CFGAN-style discriminator that sees the user's condition vector beside the sample).
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn import LinearAct
from ..reference.activations import ACTIVATIONS
from ._common import NORMS, Block, NormAct, choice, positive_int
from .condition import Condition, check_condition, embed_for_generator, no_condition_given

G_COND_MODES = ("concat", "cbn")
D_COND_MODES = ("projection", "concat")


def _hidden(hidden) -> tuple[int, ...]:
    if isinstance(hidden, int):
        hidden = (hidden,)
    hidden = tuple(hidden)
    if not hidden:
        raise ValueError("hidden must name at least one hidden layer width")
    for h in hidden:
        positive_int("hidden layer width", h)
    return hidden


class MLPGenerator(nn.Module):
    """G(z, c) -> vectors [N, out_features].

    latent_dim may be 0 for a conditional generator that is a function of the
    condition alone (as CFGAN's). out_act: 'linear' for unbounded data (2-D toys),
    'sigmoid' for values in [0, 1] (interaction profiles), 'tanh' for [-1, 1].
    """

    def __init__(
        self, out_features: int = 2, latent_dim: int = 16, hidden=(256, 256), *,
        act: str = "relu", out_act: str = "linear", norm: str = "none",
        cond_kind: str = "none", cond_size: int = 0, cond_mode: str = "concat", cond_dim: int = 32,
    ):
        super().__init__()
        self.out_features = positive_int("out_features", out_features)
        self.latent_dim = positive_int("latent_dim", latent_dim, minimum=0)
        self.hidden = _hidden(hidden)
        self.act = choice("act", act, ACTIVATIONS)
        self.out_act = choice("out_act", out_act, ACTIVATIONS)
        self.norm = choice("norm", norm, NORMS)
        self.cond_kind, self.cond_size = check_condition(cond_kind, cond_size)
        self.cond_mode = choice("cond_mode", cond_mode, G_COND_MODES)
        self.cond_dim = positive_int("cond_dim", cond_dim)
        conditional = self.cond_kind != "none"
        if conditional and self.cond_mode == "cbn" and self.norm == "none":
            raise ValueError("cond_mode='cbn' needs norm='batch' (conditional batch norm); use cond_mode='concat' with norm='none'")
        if self.latent_dim == 0 and not (conditional and self.cond_mode == "concat"):
            raise ValueError("latent_dim=0 needs a condition with cond_mode='concat' (the input would be empty)")

        self.condition = Condition(self.cond_kind, self.cond_size, self.cond_dim) if conditional else None
        norm_cond_dim = self.cond_dim if conditional and self.cond_mode == "cbn" else None
        prev = self.latent_dim + (self.cond_dim if conditional and self.cond_mode == "concat" else 0)
        fused_act = self.act if self.norm == "none" else "linear"
        blocks = []
        for width in self.hidden:
            layer = LinearAct(prev, width, bias=self.norm == "none", act=fused_act)
            blocks.append(Block(layer, NormAct(width, self.norm, self.act, norm_cond_dim)))
            prev = width
        self.blocks = nn.ModuleList(blocks)
        self.out = LinearAct(prev, self.out_features, act=self.out_act)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be [N, {self.latent_dim}], got shape {tuple(z.shape)}")
        z, embedding = embed_for_generator(self.condition, self.cond_mode, z, c)
        h = z
        for block in self.blocks:
            h = block(h, embedding)
        return self.out(h)

    def config(self) -> dict:
        return dict(
            model="MLPGenerator", out_features=self.out_features, latent_dim=self.latent_dim,
            hidden=list(self.hidden), act=self.act, out_act=self.out_act, norm=self.norm,
            cond_kind=self.cond_kind, cond_size=self.cond_size, cond_mode=self.cond_mode, cond_dim=self.cond_dim,
        )


class MLPDiscriminator(nn.Module):
    """D(x, c) -> logits [N] for vectors x [N, in_features]."""

    def __init__(
        self, in_features: int = 2, hidden=(256, 256), *, act: str = "lrelu",
        cond_kind: str = "none", cond_size: int = 0, cond_mode: str = "projection", cond_dim: int = 32,
    ):
        super().__init__()
        self.in_features = positive_int("in_features", in_features)
        self.hidden = _hidden(hidden)
        self.act = choice("act", act, ACTIVATIONS)
        self.cond_kind, self.cond_size = check_condition(cond_kind, cond_size)
        self.cond_mode = choice("cond_mode", cond_mode, D_COND_MODES)
        self.cond_dim = positive_int("cond_dim", cond_dim)
        conditional = self.cond_kind != "none"
        concat = conditional and self.cond_mode == "concat"
        prev = self.in_features + (self.cond_dim if concat else 0)
        layers = []
        for width in self.hidden:
            layers.append(LinearAct(prev, width, act=self.act))
            prev = width
        self.layers = nn.Sequential(*layers)
        self.head = LinearAct(prev, 1)
        self.condition = None
        if conditional:
            # Projection embeds into the last hidden layer's width; concat into cond_dim.
            self.condition = Condition(self.cond_kind, self.cond_size, self.cond_dim if concat else prev)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must be [N, {self.in_features}], got shape {tuple(x.shape)}")
        if self.condition is None:
            no_condition_given(c, "this discriminator")
            return self.head(self.layers(x)).flatten()
        embedding = self.condition(self.condition.check(c, x.shape[0]))
        if self.cond_mode == "concat":
            return self.head(self.layers(torch.cat([x, embedding.to(x.dtype)], dim=1))).flatten()
        h = self.layers(x)
        return self.head(h).flatten() + (embedding.to(h.dtype) * h).sum(dim=1).to(h.dtype)

    def config(self) -> dict:
        return dict(
            model="MLPDiscriminator", in_features=self.in_features, hidden=list(self.hidden), act=self.act,
            cond_kind=self.cond_kind, cond_size=self.cond_size, cond_mode=self.cond_mode, cond_dim=self.cond_dim,
        )
