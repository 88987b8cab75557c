"""Differentiable augmentation of the images the discriminator sees (DiffAugment, Zhao et
al. 2020): real and generated images get the same random transformations, in D's
update and in G's, so D cannot memorise a small training set, and the generator,
whose gradient flows through the transformation, still learns the unaugmented images.

Policies (the paper's, with its ratios): 'translation' shifts each image by up to 1/8
of its size, zero-filled; 'cutout' zeroes a square of half the size at a random
place; 'color' adds a brightness offset in [-0.5, 0.5), scales saturation by [0, 2)
(three-channel images only) and contrast by [0.5, 1.5). Images are in [-1, 1]. Every
draw comes from the generator passed in (the Trainer's noise generator), so a seeded
or resumed run augments the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("translation", "cutout", "color")


def parse_policy(text) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' or None -> ()."""
    if text is None:
        return ()
    names = tuple(name.strip() for name in str(text).split(",") if name.strip())
    for name in names:
        if name not in POLICIES:
            raise ValueError(f"augment must name policies from {POLICIES}, comma-separated, got {text!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"augment names a policy twice: {text!r}")
    return names


def _uniform(x: torch.Tensor, gen: torch.Generator, *shape) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, generator=gen, device=x.device, dtype=x.dtype)


def color(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    x = x + (_uniform(x, gen, 1, 1, 1) - 0.5)
    if x.shape[1] == 3:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_uniform(x, gen, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, gen, 1, 1, 1) + 0.5) + mean


def translation(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), generator=gen, device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), generator=gen, device=x.device)
    rows = torch.arange(h, device=x.device)[None, :, None] + dy + sh  # [n, h, 1] into the padded image
    cols = torch.arange(w, device=x.device)[None, None, :] + dx + sw  # [n, 1, w]
    padded = F.pad(x, [sw, sw, sh, sh])
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # The square's top-left corner; it may hang over the border (as in the paper).
    top = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=gen, device=x.device) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=gen, device=x.device) - cw // 2
    r = torch.arange(h, device=x.device)[None, :, None]
    c = torch.arange(w, device=x.device)[None, None, :]
    inside = (r >= top) & (r < top + ch) & (c >= left) & (c < left + cw)  # [n, h, w]
    return x * (~inside)[:, None].to(x.dtype)


_APPLY = {"color": color, "translation": translation, "cutout": cutout}


def augment(x: torch.Tensor, policy: tuple[str, ...], gen: torch.Generator) -> torch.Tensor:
    """x [N, C, H, W] with each policy applied in the order given (differentiable in x)."""
    for name in policy:
        x = _APPLY[name](x, gen)
    return x
