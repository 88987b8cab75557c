"""Custom ops of the adversarial losses (namespace fastgan).

One op returns the loss and its gradient with respect to the logits; the backward
only scales that gradient by grad_output. The gradient outputs are differentiable
outputs of the op: in a double backward, the gradient reaching them comes back into
the op's backward, which turns it into a gradient for the logits with the reference
second-derivative formula. No branch on grad mode, so torch.compile traces the same
fast backward that eager runs. Outside torch.compile / export the two ops run as
autograd Functions (DiscriminatorLoss, GeneratorLoss) with the same formulas.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from .. import _backend
from ..reference import loss as ref
from ..reference._common import compute_dtype
from . import _eager


def _impl(*tensors):
    return _backend.implementation("loss", *tensors)


def _fake_out(logits, reduction):
    shape = () if reduction != "none" else logits.shape
    return logits.new_empty(shape, dtype=compute_dtype(logits.dtype))


@torch.library.custom_op("fastgan::discriminator_loss", mutates_args=())
def discriminator_loss(
    real: Tensor, fake: Tensor, kind: str, real_label: float, reduction: str
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    return discriminator_loss_run(real, fake, kind, real_label, reduction)


@discriminator_loss.register_fake
def _(real, fake, kind, real_label, reduction):
    return _fake_out(real, reduction), _fake_out(fake, reduction), torch.empty_like(real), torch.empty_like(fake)


@torch.library.custom_op("fastgan::generator_loss", mutates_args=())
def generator_loss(fake: Tensor, kind: str, reduction: str) -> Tuple[Tensor, Tensor]:
    return generator_loss_run(fake, kind, reduction)


@generator_loss.register_fake
def _(fake, kind, reduction):
    return _fake_out(fake, reduction), torch.empty_like(fake)


def _logit_grad(grad_out, saved_grad, grad_of_saved_grad, logits, kind, side, reduction):
    """dL/dlogits from the loss output's gradient and the saved gradient's gradient."""
    total = None
    if grad_out is not None:
        total = saved_grad * grad_out
    if grad_of_saved_grad is not None:
        curvature = ref.term_second_derivative(logits, kind, side)
        if reduction == "mean":
            curvature = curvature / logits.numel()
        extra = curvature * grad_of_saved_grad
        total = extra if total is None else total + extra
    return None if total is None else total.to(logits.dtype)


def _d_setup(ctx, inputs, output):
    real, fake, kind, real_label, reduction = inputs
    ctx.set_materialize_grads(False)
    ctx.cfg = (kind, reduction)
    ctx.save_for_backward(real, fake, output[2], output[3])


def _d_backward(ctx, go_real, go_fake, gg_real, gg_fake):
    real, fake, g_real, g_fake = ctx.saved_tensors
    kind, reduction = ctx.cfg
    return (
        _logit_grad(go_real, g_real, gg_real, real, kind, "d_real", reduction),
        _logit_grad(go_fake, g_fake, gg_fake, fake, kind, "d_fake", reduction),
        None,
        None,
        None,
    )


discriminator_loss.register_autograd(_d_backward, setup_context=_d_setup)


def _g_setup(ctx, inputs, output):
    fake, kind, reduction = inputs
    ctx.set_materialize_grads(False)
    ctx.cfg = (kind, reduction)
    ctx.save_for_backward(fake, output[1])


def _g_backward(ctx, go, gg):
    fake, g = ctx.saved_tensors
    kind, reduction = ctx.cfg
    return _logit_grad(go, g, gg, fake, kind, "g", reduction), None, None


generator_loss.register_autograd(_g_backward, setup_context=_g_setup)


# ----------------------------------------------------------------------------- eager
def discriminator_loss_run(real, fake, kind, real_label, reduction):
    return _impl(real, fake).d_loss_fwd(real, fake, kind, real_label, reduction)


def generator_loss_run(fake, kind, reduction):
    return _impl(fake).g_loss_fwd(fake, kind, reduction)


DiscriminatorLoss = _eager.function("DiscriminatorLoss", discriminator_loss_run, _d_setup, _d_backward)
GeneratorLoss = _eager.function("GeneratorLoss", generator_loss_run, _g_setup, _g_backward)
