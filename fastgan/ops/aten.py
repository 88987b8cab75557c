"""The reference backend in eager mode: ATen's own ops, differentiated by ATen's autograd.

Outside torch.compile / export, fastgan.functional runs the reference backend through
these functions instead of the custom ops: the convolution, matrix product and batch
statistics are the calls a plain PyTorch model makes (oneDNN on a CPU, with ATen's
convolution_backward), so a fused model costs what the plain one does on a CPU.

Forward values are those of the reference backend functions (fastgan.reference.*:
same ops in the same order, computed in float32 for 16-bit inputs). Gradients come
from ATen's derivative formulas rather than the reference's hand-written backward, so
they may differ from the custom ops' in the last bits (a different summation order in
convolution_backward and in the batch-norm reduction), not beyond rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..reference import batch_norm as ref_bn
from ..reference._common import upcast
from ..reference.activations import bias_act


def _to(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return y if y.dtype == dtype else y.to(dtype)


def conv_bias_act(x, weight, bias, stride, padding, output_padding, transposed, act, alpha, gain, clamp):
    """y of fastgan.reference.conv.conv_fwd (channels_last), differentiable by ATen."""
    xc, wc, bc = upcast(x), upcast(weight), upcast(bias)
    if transposed:
        z = F.conv_transpose2d(xc, wc, bc, stride, padding, output_padding)
    else:
        z = F.conv2d(xc, wc, bc, stride, padding)
    return _to(bias_act(z, act, alpha, gain, clamp), x.dtype).contiguous(memory_format=torch.channels_last)


def linear_bias_act(x, weight, bias, act, alpha, gain, clamp):
    """y of fastgan.reference.linear.linear_fwd, differentiable by ATen."""
    z = F.linear(upcast(x), upcast(weight), upcast(bias))
    return _to(bias_act(z, act, alpha, gain, clamp), x.dtype)


def batch_norm_act(x, weight, bias, running_mean, running_var, training, eps, act, alpha):
    """(y, batch mean, biased batch variance) of fastgan.reference.batch_norm.bn_fwd
    (mean and variance detached, empty in eval), differentiable by ATen."""
    if training:
        mean, var = ref_bn.batch_stats(x)
        z = ref_bn._normalize(x, weight, bias, mean, var, eps)
        mean, var = mean.detach(), var.detach()
    else:
        z = ref_bn._normalize(x, weight, bias, running_mean, running_var, eps)
        mean = var = None
    y = _to(bias_act(z, act, alpha, 1.0, None), x.dtype)
    if y.stride() != x.stride():  # bn_fwd's y has x's memory format
        y = torch.empty_like(x).copy_(y)
    return y, mean, var
