"""Custom ops of the linear family (namespace fastgan): x [M, K] @ w[N, K]^T + b, then
the activation epilogue; registration, fake implementations and autograd. Outside
torch.compile / export the three ops run as autograd Functions (LinearBiasAct,
LinearGradInput, LinearGradWeight) with the same formulas (see fastgan.ops.conv)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .. import _backend
from ..reference.activations import needs_preactivation
from . import _bilinear as B
from . import _eager


def _impl(*tensors):
    return _backend.implementation("linear", *tensors)


@torch.library.custom_op("fastgan::linear_bias_act", mutates_args=())
def linear_bias_act(
    x: Tensor, weight: Tensor, bias: Optional[Tensor], act: str, alpha: float, gain: float, clamp: Optional[float]
) -> Tuple[Tensor, Tensor]:
    return linear_bias_act_run(x, weight, bias, act, alpha, gain, clamp)


@linear_bias_act.register_fake
def _(x, weight, bias, act, alpha, gain, clamp):
    y = x.new_empty((x.shape[0], weight.shape[0]))
    return y, (x.new_empty(y.shape) if needs_preactivation(act) else x.new_empty(0))


@torch.library.custom_op("fastgan::linear_grad_input", mutates_args=())
def linear_grad_input(
    grad: Tensor, saved: Tensor, weight: Tensor, act: str, alpha: float, gain: float, clamp: Optional[float]
) -> Tensor:
    return linear_grad_input_run(grad, saved, weight, act, alpha, gain, clamp)


@linear_grad_input.register_fake
def _(grad, saved, weight, act, alpha, gain, clamp):
    return grad.new_empty((grad.shape[0], weight.shape[1]))


@torch.library.custom_op("fastgan::linear_grad_weight", mutates_args=())
def linear_grad_weight(
    grad: Tensor,
    saved: Tensor,
    x: Tensor,
    act: str,
    alpha: float,
    gain: float,
    clamp: Optional[float],
    need_bias: bool,
) -> Tuple[Tensor, Tensor]:
    return linear_grad_weight_run(grad, saved, x, act, alpha, gain, clamp, need_bias)


@linear_grad_weight.register_fake
def _(grad, saved, x, act, alpha, gain, clamp, need_bias):
    gw = x.new_empty((grad.shape[1], x.shape[1]))
    return gw, (grad.new_empty(grad.shape[1]) if need_bias else grad.new_empty(0))


class LinearOps:
    """The three linear ops, run by `calls` (CUSTOM_OPS or EAGER)."""

    def __init__(self, calls: B.Calls):
        self.calls = calls

    def fwd(self, x, w, b, act: B.Act):
        return self.calls.fwd(x, w, b, *act)

    def grad_input(self, g, s, w, act: B.Act):
        return self.calls.grad_input(g, s, w, *act)

    def grad_weight(self, g, s, x, act: B.Act, need_bias: bool):
        return self.calls.grad_weight(g, s, x, *act, need_bias)

    def broadcast_channels(self, v, like):
        return v.expand_as(like)


_OPS = LinearOps(B.Calls(torch.ops.fastgan.linear_bias_act, torch.ops.fastgan.linear_grad_input,
                         torch.ops.fastgan.linear_grad_weight))


def _fwd_setup(ctx, inputs, output, ops=_OPS):
    x, weight, bias, *act = inputs
    y, z = output
    ctx.set_materialize_grads(False)
    ctx.act = B.Act(*act)
    ctx.ops = ops
    ctx.save_for_backward(x, weight, B.saved_for_backward(ctx.act, y, z))


def _fwd_backward(ctx, gy, gz):
    x, weight, s = ctx.saved_tensors
    grads = B.fwd_backward(ctx.ops, ctx.needs_input_grad[:3], ctx.act, x, weight, s, gy, B.none_if_empty(gz))
    return (*grads, None, None, None, None)


linear_bias_act.register_autograd(_fwd_backward, setup_context=_fwd_setup)


def _grad_input_setup(ctx, inputs, output, ops=_OPS):
    grad, saved, weight, *act = inputs
    ctx.set_materialize_grads(False)
    ctx.act = B.Act(*act)
    ctx.ops = ops
    ctx.save_for_backward(grad, saved, weight)


def _grad_input_backward(ctx, ggx):
    grad, saved, weight = ctx.saved_tensors
    grads = B.grad_input_backward(ctx.ops, ctx.needs_input_grad[:3], ctx.act, grad, saved, weight, ggx)
    return (*grads, None, None, None, None)


linear_grad_input.register_autograd(_grad_input_backward, setup_context=_grad_input_setup)


def _grad_weight_setup(ctx, inputs, output, ops=_OPS):
    grad, saved, x, *rest = inputs
    ctx.set_materialize_grads(False)
    ctx.act = B.Act(*rest[:4])
    ctx.ops = ops
    ctx.save_for_backward(grad, saved, x)


def _grad_weight_backward(ctx, ggw, ggb):
    grad, saved, x = ctx.saved_tensors
    grads = B.grad_weight_backward(
        ctx.ops, ctx.needs_input_grad[:3], ctx.act, grad, saved, x, ggw, B.none_if_empty(ggb)
    )
    return (*grads, None, None, None, None, None)


linear_grad_weight.register_autograd(_grad_weight_backward, setup_context=_grad_weight_setup)


# ----------------------------------------------------------------------------- eager
def linear_bias_act_run(x, weight, bias, act, alpha, gain, clamp):
    return _impl(x, weight, bias).linear_fwd(x, weight, bias, act, alpha, gain, clamp)


def linear_grad_input_run(grad, saved, weight, act, alpha, gain, clamp):
    return _impl(grad, saved, weight).linear_grad_input(grad, saved, weight, act, alpha, gain, clamp)


def linear_grad_weight_run(grad, saved, x, act, alpha, gain, clamp, need_bias):
    return _impl(grad, saved, x).linear_grad_weight(grad, saved, x, act, alpha, gain, clamp, need_bias)


LinearBiasAct = _eager.function("LinearBiasAct", linear_bias_act_run,
                                lambda ctx, i, o: _fwd_setup(ctx, i, o, _EAGER_OPS), _fwd_backward)
LinearGradInput = _eager.function("LinearGradInput", linear_grad_input_run,
                                  lambda ctx, i, o: _grad_input_setup(ctx, i, o, _EAGER_OPS), _grad_input_backward)
LinearGradWeight = _eager.function("LinearGradWeight", linear_grad_weight_run,
                                   lambda ctx, i, o: _grad_weight_setup(ctx, i, o, _EAGER_OPS), _grad_weight_backward)
_EAGER_OPS = LinearOps(B.eager_calls(LinearBiasAct, LinearGradInput, LinearGradWeight))
