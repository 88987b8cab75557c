"""The reference backend in eager mode: ATen's own ops, differentiated by ATen's autograd.

Outside torch.compile / export, fastgan.functional runs the reference backend through
these functions instead of the custom ops: the convolution, matrix product and batch
statistics are the calls a plain PyTorch model makes (oneDNN on a CPU, with ATen's
convolution_backward), so a fused model costs what the plain one does on a CPU.

Conv and linear forward values are those of the reference backend functions
(fastgan.reference.*: the same ops in the same order, in float32 for 16-bit inputs).
Batch norm is ATen's own batch_norm (which also updates the running statistics, as
nn.BatchNorm2d does): its statistics and normalisation round differently from the
reference's two-pass formula, by a few ulps. Gradients come from ATen's derivative
formulas rather than the reference's hand-written backward, so they differ from the
custom ops' in the last bits (another summation order in convolution_backward and in
the batch-norm reductions), not beyond rounding. relu and leaky relu run in place on
the fresh conv / batch-norm output, as nn.ReLU(inplace=True) does in a plain model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..reference._common import upcast
from ..reference.activations import bias_act


def _epilogue(z: torch.Tensor, act, alpha, gain, clamp) -> torch.Tensor:
    """bias_act on a fresh tensor z that no backward needs (a conv or batch-norm output):
    relu / leaky relu in place, as a plain model's nn.ReLU(inplace=True) does."""
    if gain == 1.0 and clamp is None:
        if act == "relu":
            return F.relu_(z)
        if act == "lrelu":
            return F.leaky_relu_(z, alpha)
    return bias_act(z, act, alpha, gain, clamp)


def _to(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return y if y.dtype == dtype else y.to(dtype)


def conv_bias_act(x, weight, bias, stride, padding, output_padding, transposed, act, alpha, gain, clamp):
    """y of fastgan.reference.conv.conv_fwd (channels_last), differentiable by ATen."""
    xc, wc, bc = upcast(x), upcast(weight), upcast(bias)
    if transposed:
        if xc.device.type == "cpu" and wc.shape[1] == 1 and xc.shape[3] == 1:
            # torch 2.13's CPU transposed conv (oneDNN) returns a wrong input gradient
            # (sometimes never-written memory) for a channels_last x one pixel wide into
            # one output channel: every failing case of a sweep of 11520 geometries had
            # both (found by tests/test_activation_registry.py in CI). From an NCHW x it
            # is right; the copy is of a one-pixel-wide input.
            xc = xc.contiguous()
        z = F.conv_transpose2d(xc, wc, bc, stride, padding, output_padding)
    else:
        z = F.conv2d(xc, wc, bc, stride, padding)
    return _to(_epilogue(z, act, alpha, gain, clamp), x.dtype).contiguous(memory_format=torch.channels_last)


def linear_bias_act(x, weight, bias, act, alpha, gain, clamp):
    """y of fastgan.reference.linear.linear_fwd, differentiable by ATen."""
    z = F.linear(upcast(x), upcast(weight), upcast(bias))
    return _to(_epilogue(z, act, alpha, gain, clamp), x.dtype)


def batch_norm_act(x, weight, bias, running_mean, running_var, training, momentum, eps, act, alpha):
    """act(F.batch_norm(x, ...)) computed as fastgan.reference computes it (float32 for
    16-bit x); the running statistics, when given in training, are updated by ATen."""
    z = F.batch_norm(upcast(x), running_mean, running_var, weight, bias, training, momentum, eps)
    return _to(_epilogue(z, act, alpha, 1.0, None), x.dtype)
