"""Custom ops of the convolution family (namespace fastgan), for conv2d and
conv_transpose2d alike (`transposed` flips the roles): registration, fake
implementations and autograd. Each op runs fastgan.kernels.conv or
fastgan.reference.conv, as the backend decides for its tensors.

Outside torch.compile / export the same three operations run as torch.autograd
Functions (ConvBiasAct, ConvGradInput, ConvGradWeight) with the same autograd
formulas: they skip torch.library's dispatch, which costs more host time per call than
a kernel launch (fastgan.bench.host). Without grad mode (a first-order backward) the
backward calls the backend functions directly.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .. import _backend
from ..reference.activations import needs_preactivation
from ..reference._common import empty_channels_last
from ..reference.conv import output_size
from . import _bilinear as B
from . import _eager


def _impl(*tensors):
    return _backend.implementation("conv", *tensors)


@torch.library.custom_op("fastgan::conv_bias_act", mutates_args=())
def conv_bias_act(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    stride: List[int],
    padding: List[int],
    output_padding: List[int],
    transposed: bool,
    act: str,
    alpha: float,
    gain: float,
    clamp: Optional[float],
) -> Tuple[Tensor, Tensor]:
    return conv_bias_act_run(x, weight, bias, stride, padding, output_padding, transposed, act, alpha, gain, clamp)


@conv_bias_act.register_fake
def _(x, weight, bias, stride, padding, output_padding, transposed, act, alpha, gain, clamp):
    c_out = weight.shape[1] if transposed else weight.shape[0]
    oh, ow = output_size(x.shape[2:], weight.shape[2:], stride, padding, output_padding, transposed)
    y = empty_channels_last((x.shape[0], c_out, oh, ow), x.dtype, x.device)
    z = empty_channels_last(y.shape, x.dtype, x.device) if needs_preactivation(act) else x.new_empty(0)
    return y, z


@torch.library.custom_op("fastgan::conv_grad_input", mutates_args=())
def conv_grad_input(
    grad: Tensor,
    saved: Tensor,
    weight: Tensor,
    input_size: List[int],
    stride: List[int],
    padding: List[int],
    transposed: bool,
    act: str,
    alpha: float,
    gain: float,
    clamp: Optional[float],
) -> Tensor:
    return conv_grad_input_run(grad, saved, weight, input_size, stride, padding, transposed, act, alpha, gain, clamp)


@conv_grad_input.register_fake
def _(grad, saved, weight, input_size, stride, padding, transposed, act, alpha, gain, clamp):
    c_in = weight.shape[0] if transposed else weight.shape[1]
    return empty_channels_last((grad.shape[0], c_in, input_size[0], input_size[1]), grad.dtype, grad.device)


@torch.library.custom_op("fastgan::conv_grad_weight", mutates_args=())
def conv_grad_weight(
    grad: Tensor,
    saved: Tensor,
    x: Tensor,
    kernel_size: List[int],
    stride: List[int],
    padding: List[int],
    transposed: bool,
    act: str,
    alpha: float,
    gain: float,
    clamp: Optional[float],
    need_bias: bool,
) -> Tuple[Tensor, Tensor]:
    return conv_grad_weight_run(
        grad, saved, x, kernel_size, stride, padding, transposed, act, alpha, gain, clamp, need_bias
    )


@conv_grad_weight.register_fake
def _(grad, saved, x, kernel_size, stride, padding, transposed, act, alpha, gain, clamp, need_bias):
    big, small = grad.shape[1], x.shape[1]
    shape = (small, big) if transposed else (big, small)
    gw = x.new_empty((*shape, kernel_size[0], kernel_size[1]))
    gb = grad.new_empty(big) if need_bias else grad.new_empty(0)
    return gw, gb


class ConvOps:
    """The three conv ops with one geometry bound: x-side size x_hw, y-side size y_hw.
    `calls` runs them: CUSTOM_OPS (traced graphs) or EAGER (autograd Functions)."""

    def __init__(self, stride, padding, transposed, x_hw, y_hw, kernel_hw, calls):
        self.calls = calls
        self.stride, self.padding, self.transposed = list(stride), list(padding), transposed
        self.x_hw, self.kernel_hw = list(x_hw), list(kernel_hw)
        if transposed:
            full = output_size(x_hw, kernel_hw, stride, padding, [0, 0], transposed=True)
            self.output_padding = [y_hw[i] - full[i] for i in range(2)]
        else:
            self.output_padding = [0, 0]

    def fwd(self, x, w, b, act: B.Act):
        return self.calls.fwd(x, w, b, self.stride, self.padding, self.output_padding, self.transposed, *act)

    def grad_input(self, g, s, w, act: B.Act):
        return self.calls.grad_input(g, s, w, self.x_hw, self.stride, self.padding, self.transposed, *act)

    def grad_weight(self, g, s, x, act: B.Act, need_bias: bool):
        return self.calls.grad_weight(
            g, s, x, self.kernel_hw, self.stride, self.padding, self.transposed, *act, need_bias
        )

    def broadcast_channels(self, v, like):
        return v.view(1, -1, 1, 1).expand_as(like)


_geometries: dict = {}


def _conv_ops(stride, padding, transposed, x_hw, y_hw, kernel_hw, calls) -> ConvOps:
    """ConvOps for this geometry, made once per geometry (a training step repeats them)."""
    calls = calls or CUSTOM_OPS
    try:
        key = (tuple(stride), tuple(padding), transposed, tuple(x_hw), tuple(y_hw), tuple(kernel_hw), calls is EAGER)
        ops = _geometries.get(key)
    except TypeError:  # symbolic sizes under tracing: not cached
        return ConvOps(stride, padding, transposed, x_hw, y_hw, kernel_hw, calls)
    if ops is None:
        if len(_geometries) >= 4096:
            _geometries.clear()
        ops = _geometries[key] = ConvOps(stride, padding, transposed, x_hw, y_hw, kernel_hw, calls)
    return ops


def _fwd_setup(ctx, inputs, output, calls=None):
    x, weight, bias, stride, padding, output_padding, transposed, *act = inputs
    y, z = output
    ctx.set_materialize_grads(False)
    ctx.act = B.Act(*act)
    ctx.ops = _conv_ops(stride, padding, transposed, x.shape[2:], y.shape[2:], weight.shape[2:], calls)
    ctx.save_for_backward(x, weight, B.saved_for_backward(ctx.act, y, z))


def _fwd_backward(ctx, gy, gz):
    x, weight, s = ctx.saved_tensors
    grads = B.fwd_backward(ctx.ops, ctx.needs_input_grad[:3], ctx.act, x, weight, s, gy, B.none_if_empty(gz))
    return (*grads, None, None, None, None, None, None, None, None)


conv_bias_act.register_autograd(_fwd_backward, setup_context=_fwd_setup)


def _grad_input_setup(ctx, inputs, output, calls=None):
    grad, saved, weight, input_size, stride, padding, transposed, *act = inputs
    ctx.set_materialize_grads(False)
    ctx.act = B.Act(*act)
    ctx.ops = _conv_ops(stride, padding, transposed, input_size, grad.shape[2:], weight.shape[2:], calls)
    ctx.save_for_backward(grad, saved, weight)


def _grad_input_backward(ctx, ggx):
    grad, saved, weight = ctx.saved_tensors
    grads = B.grad_input_backward(ctx.ops, ctx.needs_input_grad[:3], ctx.act, grad, saved, weight, ggx)
    return (*grads, None, None, None, None, None, None, None, None)


conv_grad_input.register_autograd(_grad_input_backward, setup_context=_grad_input_setup)


def _grad_weight_setup(ctx, inputs, output, calls=None):
    grad, saved, x, kernel_size, stride, padding, transposed, *rest = inputs
    ctx.set_materialize_grads(False)
    ctx.act = B.Act(*rest[:4])
    ctx.ops = _conv_ops(stride, padding, transposed, x.shape[2:], grad.shape[2:], kernel_size, calls)
    ctx.save_for_backward(grad, saved, x)


def _grad_weight_backward(ctx, ggw, ggb):
    grad, saved, x = ctx.saved_tensors
    grads = B.grad_weight_backward(
        ctx.ops, ctx.needs_input_grad[:3], ctx.act, grad, saved, x, ggw, B.none_if_empty(ggb)
    )
    return (*grads, None, None, None, None, None, None, None, None, None)


conv_grad_weight.register_autograd(_grad_weight_backward, setup_context=_grad_weight_setup)


CUSTOM_OPS = B.Calls(torch.ops.fastgan.conv_bias_act, torch.ops.fastgan.conv_grad_input, torch.ops.fastgan.conv_grad_weight)


# ----------------------------------------------------------------------------- eager
def conv_bias_act_run(x, weight, bias, stride, padding, output_padding, transposed, act, alpha, gain, clamp):
    return _impl(x, weight, bias).conv_fwd(x, weight, bias, stride, padding, output_padding, transposed,
                                           act, alpha, gain, clamp)


def conv_grad_input_run(grad, saved, weight, input_size, stride, padding, transposed, act, alpha, gain, clamp):
    return _impl(grad, saved, weight).conv_grad_input(grad, saved, weight, input_size, stride, padding,
                                                      transposed, act, alpha, gain, clamp)


def conv_grad_weight_run(grad, saved, x, kernel_size, stride, padding, transposed, act, alpha, gain, clamp, need_bias):
    return _impl(grad, saved, x).conv_grad_weight(grad, saved, x, kernel_size, stride, padding, transposed,
                                                  act, alpha, gain, clamp, need_bias)


ConvBiasAct = _eager.function("ConvBiasAct", conv_bias_act_run,
                              lambda ctx, i, o: _fwd_setup(ctx, i, o, EAGER), _fwd_backward)
ConvGradInput = _eager.function("ConvGradInput", conv_grad_input_run,
                                lambda ctx, i, o: _grad_input_setup(ctx, i, o, EAGER), _grad_input_backward)
ConvGradWeight = _eager.function("ConvGradWeight", conv_grad_weight_run,
                                 lambda ctx, i, o: _grad_weight_setup(ctx, i, o, EAGER), _grad_weight_backward)
EAGER = B.eager_calls(ConvBiasAct, ConvGradInput, ConvGradWeight)
