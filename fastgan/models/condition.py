"""A user's condition (class label, attribute vector or user id) as a learned vector.

Every conditional model owns one `Condition` per place it reads the condition (the
generator's input or its normalisation layers, the discriminator's projection), each
with the width that place needs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn import LinearAct

COND_KINDS = ("none", "label", "attributes", "user")


def check_condition(cond_kind: str, cond_size: int) -> tuple[str, int]:
    """Validate the plain (kind, size) pair that describes a condition."""
    if cond_kind not in COND_KINDS:
        raise ValueError(f"cond_kind must be one of {COND_KINDS}, got {cond_kind!r}")
    if cond_kind == "none":
        return "none", 0
    what = {"label": "the number of classes", "attributes": "the number of attributes", "user": "the number of users"}
    if isinstance(cond_size, bool) or not isinstance(cond_size, int) or cond_size < 1:
        raise ValueError(f"cond_size must be {what[cond_kind]} (a positive int) for cond_kind={cond_kind!r}, got {cond_size!r}")
    return cond_kind, cond_size


class Condition(nn.Module):
    """Embeds a condition into `dim` features.

    - ``label``: c is an integer tensor [N] of class indices < size (nn.Embedding);
    - ``attributes``: c is a float tensor [N, size] of user attributes, multi-hot and/or
      continuous (a linear map without bias: all-zero attributes embed to zero);
    - ``user``: c is an integer tensor [N] of user ids < size, one learned vector per user.
    """

    def __init__(self, kind: str, size: int, dim: int):
        super().__init__()
        self.kind, self.size = check_condition(kind, size)
        if self.kind == "none":
            raise ValueError("Condition needs cond_kind 'label', 'attributes' or 'user' (a model without one has no Condition)")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"the condition's embedding dim must be a positive int, got {dim!r}")
        self.dim = dim
        if self.kind == "attributes":
            self.embed = LinearAct(size, dim, bias=False)
        else:
            self.embed = nn.Embedding(size, dim)

    def check(self, c, batch: int) -> torch.Tensor:
        """c, validated against this condition and a batch of `batch` samples."""
        if not isinstance(c, torch.Tensor):
            raise TypeError(f"the condition c must be a torch.Tensor for cond_kind={self.kind!r}, got {type(c).__name__}")
        if self.kind == "attributes":
            if not c.is_floating_point() or c.dim() != 2 or c.shape[1] != self.size:
                raise ValueError(
                    f"c must be a float tensor [N, {self.size}] of attributes, got {c.dtype} of shape {tuple(c.shape)}"
                )
        elif c.is_floating_point() or c.is_complex() or c.dtype == torch.bool or c.dim() != 1:
            what = "class indices" if self.kind == "label" else "user ids"
            raise ValueError(f"c must be an integer tensor [N] of {what}, got {c.dtype} of shape {tuple(c.shape)}")
        if c.shape[0] != batch:
            raise ValueError(f"c holds {c.shape[0]} conditions for a batch of {batch}")
        return c

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        if self.kind == "attributes":
            return self.embed(c.to(self.embed.weight.dtype))
        return self.embed(c)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, size={self.size}, dim={self.dim}"


def no_condition_given(c, name: str) -> None:
    if c is not None:
        raise ValueError(f"{name} is unconditional (cond_kind='none') but a condition c was given")


def embed_for_generator(condition: Condition | None, cond_mode: str, z: torch.Tensor, c):
    """(z, embedding) for a generator's blocks: c checked and embedded (None when the
    generator is unconditional), and concatenated to z when cond_mode is 'concat'."""
    if condition is None:
        no_condition_given(c, "this generator")
        return z, None
    embedding = condition(condition.check(c, z.shape[0]))
    if cond_mode == "concat":
        z = torch.cat([z, embedding.to(z.dtype)], dim=1)
    return z, embedding
