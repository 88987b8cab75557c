"""Reference for the convolution family: conv2d and conv_transpose2d + bias + activation.

Two layers live here:
- `conv2d_bias_act` / `conv_transpose2d_bias_act`: the plain PyTorch composition with
  the public signature, differentiable by autograd: the test oracle.
- `conv_fwd`, `conv_grad_input`, `conv_grad_weight`: the backend functions that
  fastgan.ops dispatches to. fastgan.kernels.conv implements the same three functions
  with the same signatures in Triton.

The three backend functions cover both directions: the input gradient of a
convolution is a transposed convolution and the other way round, so `transposed`
flips the roles. In the backward functions `s` is the tensor saved by the forward (y,
or z for silu, or an empty tensor when act is linear without clamp) from which the
activation derivative is applied to the incoming gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .activations import act_grad, bias_act, clamp_as_saved, needs_preactivation
from ._common import as_channels_last, compute_dtype, empty_like_nothing, upcast


def conv2d_bias_act(
    x, weight, bias=None, *, stride=1, padding=0, act="linear", alpha=None, gain=None, clamp=None
):
    z = F.conv2d(x, weight, bias, stride, padding)
    return bias_act(z, act, alpha, gain, clamp)


def conv_transpose2d_bias_act(
    x,
    weight,
    bias=None,
    *,
    stride=1,
    padding=0,
    output_padding=0,
    act="linear",
    alpha=None,
    gain=None,
    clamp=None,
):
    z = F.conv_transpose2d(x, weight, bias, stride, padding, output_padding)
    return bias_act(z, act, alpha, gain, clamp)


def output_size(in_hw, kernel_hw, stride, padding, output_padding, transposed):
    """Spatial output size of the convolution (or transposed convolution)."""
    if transposed:
        return [
            (in_hw[i] - 1) * stride[i] - 2 * padding[i] + kernel_hw[i] + output_padding[i]
            for i in range(2)
        ]
    return [(in_hw[i] + 2 * padding[i] - kernel_hw[i]) // stride[i] + 1 for i in range(2)]


def _linear_conv(x, weight, bias, stride, padding, output_padding, transposed):
    if x.numel() == 0 or weight.numel() == 0:
        # An empty problem: ATen refuses some of these shapes (a transposed convolution
        # with no input channels); no product contributes, the result is the bias.
        c_out = weight.shape[1] if transposed else weight.shape[0]
        hw = output_size(x.shape[2:], weight.shape[2:], stride, padding, output_padding, transposed)
        z = x.new_zeros((x.shape[0], c_out, hw[0], hw[1]))
        return z if bias is None else z + bias.view(1, -1, 1, 1)
    if transposed:
        return F.conv_transpose2d(x, weight, bias, stride, padding, output_padding)
    return F.conv2d(x, weight, bias, stride, padding)


def conv_fwd(x, weight, bias, stride, padding, output_padding, transposed, act, alpha, gain, clamp):
    """(y, z): y = clamp(act(conv(x, w) + b) * gain), z the pre-activation when the
    backward needs it (silu), else an empty tensor. Outputs are channels_last."""
    z = _linear_conv(upcast(x), upcast(weight), upcast(bias), stride, padding, output_padding, transposed)
    y = as_channels_last(bias_act(z, act, alpha, gain, clamp), x.dtype)
    if needs_preactivation(act):
        return y, as_channels_last(z, x.dtype)
    return y, empty_like_nothing(x)


def conv_grad_input(grad, s, weight, input_hw, stride, padding, transposed, act, alpha, gain, clamp):
    """dL/dx of conv_fwd, given dL/dy (`grad`) and the saved s. channels_last."""
    gz = act_grad(upcast(grad), upcast(s), act, alpha, gain, clamp_as_saved(clamp, act, s.dtype))
    w = upcast(weight)
    if gz.numel() == 0 or w.numel() == 0:
        # An empty problem (a batch of 0, or no channels on one side): ATen's convolutions
        # refuse some of these shapes, and the gradient is all zeros (or empty) anyway.
        c_in = weight.shape[0] if transposed else weight.shape[1]
        shape = (grad.shape[0], c_in, input_hw[0], input_hw[1])
        return as_channels_last(gz.new_zeros(shape), grad.dtype)
    if transposed:
        gx = F.conv2d(gz, w, None, stride, padding)
    else:
        kernel_hw = weight.shape[2:]
        full = output_size(gz.shape[2:], kernel_hw, stride, padding, [0, 0], transposed=True)
        output_padding = [input_hw[i] - full[i] for i in range(2)]
        gx = F.conv_transpose2d(gz, w, None, stride, padding, output_padding)
    return as_channels_last(gx, grad.dtype)


def conv_grad_weight(grad, s, x, kernel_hw, stride, padding, transposed, act, alpha, gain, clamp, need_bias):
    """(dL/dw, dL/db) of conv_fwd; dL/db is empty unless need_bias."""
    gz = act_grad(upcast(grad), upcast(s), act, alpha, gain, clamp_as_saved(clamp, act, s.dtype))
    xc = upcast(x)
    if gz.numel() == 0 or xc.numel() == 0:
        # An empty problem: no product contributes, the weight gradient is zero.
        c_x, c_y = x.shape[1], gz.shape[1]
        shape = (c_x, c_y) if transposed else (c_y, c_x)
        gb = gz.sum(dim=(0, 2, 3)).to(grad.dtype) if need_bias else empty_like_nothing(grad)
        return x.new_zeros((*shape, kernel_hw[0], kernel_hw[1])), gb
    # A transposed convolution's weight [C_in, C_out, kh, kw] is, read as a conv2d weight
    # [out, in, kh, kw], the conv2d from its output side back to its input side: the
    # conv2d weight gradient applies with the two tensors' roles swapped.
    inp, out = (gz, xc) if transposed else (xc, gz)
    weight_shape = [out.shape[1], inp.shape[1], kernel_hw[0], kernel_hw[1]]
    weight_stub = inp.new_empty(1).expand(weight_shape)
    _, gw, _ = torch.ops.aten.convolution_backward(
        out, inp, weight_stub, None, stride, padding, [1, 1], False, [0, 0], 1, [False, True, False]
    )
    gb = gz.sum(dim=(0, 2, 3)).to(grad.dtype) if need_bias else empty_like_nothing(grad)
    return gw.to(x.dtype).contiguous(), gb


__all__ = [
    "conv2d_bias_act",
    "conv_transpose2d_bias_act",
    "conv_fwd",
    "conv_grad_input",
    "conv_grad_weight",
    "output_size",
    "compute_dtype",
]
