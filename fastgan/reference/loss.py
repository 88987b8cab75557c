"""Reference for the adversarial losses (oracle and backend functions).

Per-element terms, with r a real logit, f a fake logit, y the real label and
softplus(t) = log(1 + exp(t)) (computed stably for any |t|):

    kind           D real term        D fake term   G term
    nonsaturating  softplus(r) - y*r  softplus(f)   softplus(-f)
    minimax        softplus(r) - y*r  softplus(f)   -softplus(f)
    lsgan          0.5*(r - y)^2      0.5*f^2       0.5*(f - 1)^2
    hinge          relu(1 - r)        relu(1 + f)   -f
    wasserstein    -r                 f             -f

softplus(r) - y*r is evaluated as softplus(-r) + (1 - y)*r and its derivative
sigmoid(r) - y as (1 - y) - sigmoid(-r): the same values, without the cancellation
that turns e^-r into 0 for large r. Terms are computed in float32 (float64 for float64 logits) and returned in that
dtype, so float16 logits of +-1e4 give finite losses. The backend functions return,
per side, the reduced (or per-element) loss and its gradient with respect to the
logits, in the logits' dtype: the gradient costs nothing extra and the op's backward
only scales it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._common import compute_dtype


@dataclass(frozen=True)
class LossKind:
    """One adversarial loss: its per-element terms (D real | D fake | G, as in the
    table above) and whether it takes a real label. A kind without labels (a margin
    or a critic) has no target to smooth: its real label must stay the default."""

    name: str
    terms: str
    uses_labels: bool
    default_real_label: float = 1.0


# The loss-kind table, read by the reference below, the kernels (fastgan.kernels.loss),
# fastgan.functional and fastgan.nn.GANLoss (through fastgan._validate.real_label).
LOSS_KINDS = {
    k.name: k
    for k in (
        LossKind("nonsaturating", "softplus(r) - y*r | softplus(f) | softplus(-f)", uses_labels=True),
        LossKind("minimax", "softplus(r) - y*r | softplus(f) | -softplus(f)", uses_labels=True),
        LossKind("lsgan", "0.5*(r - y)^2 | 0.5*f^2 | 0.5*(f - 1)^2", uses_labels=True),
        LossKind("hinge", "relu(1 - r) | relu(1 + f) | -f", uses_labels=False),
        LossKind("wasserstein", "-r | f | -f", uses_labels=False),
    )
}
KINDS = tuple(LOSS_KINDS)
REDUCTIONS = ("mean", "sum", "none")
SIDES = ("d_real", "d_fake", "g")


def softplus(t: torch.Tensor) -> torch.Tensor:
    return F.relu(t) + torch.log1p(torch.exp(-t.abs()))


def terms(logits: torch.Tensor, kind: str, side: str, real_label: float = 1.0) -> torch.Tensor:
    """Per-element loss terms (differentiable), in the compute dtype."""
    t = logits.to(compute_dtype(logits.dtype))
    if kind in ("nonsaturating", "minimax"):
        if side == "d_real":
            return softplus(-t) + (1 - real_label) * t
        if side == "d_fake":
            return softplus(t)
        return softplus(-t) if kind == "nonsaturating" else -softplus(t)
    if kind == "lsgan":
        target = {"d_real": real_label, "d_fake": 0.0, "g": 1.0}[side]
        return 0.5 * (t - target).square()
    if kind == "hinge":
        if side == "d_real":
            return F.relu(1 - t)
        if side == "d_fake":
            return F.relu(1 + t)
        return -t
    if kind == "wasserstein":
        return -t if side in ("d_real", "g") else t.clone()  # never the logits themselves
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def term_derivative(logits: torch.Tensor, kind: str, side: str, real_label: float = 1.0) -> torch.Tensor:
    """d term / d logit per element (differentiable: the double-backward formula)."""
    t = logits.to(compute_dtype(logits.dtype))
    if kind in ("nonsaturating", "minimax"):
        if side == "d_real":
            return (1 - real_label) - torch.sigmoid(-t)
        if side == "d_fake":
            return torch.sigmoid(t)
        return -torch.sigmoid(-t) if kind == "nonsaturating" else -torch.sigmoid(t)
    if kind == "lsgan":
        target = {"d_real": real_label, "d_fake": 0.0, "g": 1.0}[side]
        return t - target
    if kind == "hinge":
        if side == "d_real":
            return -(t < 1).to(t.dtype)
        if side == "d_fake":
            return (t > -1).to(t.dtype)
        return -torch.ones_like(t)
    if kind == "wasserstein":
        sign = -1.0 if side in ("d_real", "g") else 1.0
        return torch.full_like(t, sign)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def term_second_derivative(logits: torch.Tensor, kind: str, side: str) -> torch.Tensor:
    """d^2 term / d logit^2 per element (differentiable: the double-backward formula)."""
    t = logits.to(compute_dtype(logits.dtype))
    if kind in ("nonsaturating", "minimax"):
        sig = torch.sigmoid(t)
        curvature = sig * (1 - sig)
        return -curvature if (kind == "minimax" and side == "g") else curvature
    if kind == "lsgan":
        return torch.ones_like(t)
    if kind in ("hinge", "wasserstein"):
        return torch.zeros_like(t)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def discriminator_loss(real_logits, fake_logits, kind="nonsaturating", *, real_label=1.0, reduction="mean"):
    """Oracle with the public signature: a scalar for mean/sum, the pair of per-element
    term tensors for 'none'."""
    r = reduce(terms(real_logits, kind, "d_real", real_label), reduction)
    f = reduce(terms(fake_logits, kind, "d_fake"), reduction)
    return (r, f) if reduction == "none" else r + f


def generator_loss(fake_logits, kind="nonsaturating", *, reduction="mean"):
    return reduce(terms(fake_logits, kind, "g"), reduction)


def side_fwd(logits, kind, side, real_label, reduction):
    """(loss, dloss/dlogits) for one side; loss reduced unless reduction is 'none'."""
    values = terms(logits, kind, side, real_label)
    grad = term_derivative(logits, kind, side, real_label)
    if reduction == "mean":
        grad = grad / logits.numel()
    return reduce(values, reduction), grad.to(logits.dtype)


def d_loss_fwd(real, fake, kind, real_label, reduction):
    """(real part, fake part, grad wrt real, grad wrt fake); D loss = real part + fake part."""
    out_r, g_r = side_fwd(real, kind, "d_real", real_label, reduction)
    out_f, g_f = side_fwd(fake, kind, "d_fake", real_label, reduction)
    return out_r, out_f, g_r, g_f


def g_loss_fwd(fake, kind, reduction):
    return side_fwd(fake, kind, "g", 1.0, reduction)
