"""fastgan's public functions: argument checking, then dispatch to fastgan.ops.

Each fused op equals the plain PyTorch composition it replaces:
    conv2d_bias_act(x, w, b, act=a, gain=g, clamp=c)
        == clamp(a(F.conv2d(x, w, b, stride, padding)) * g, -c, c)
and likewise for conv_transpose2d_bias_act, linear_bias_act, batch_norm_act. Activations:
linear, relu, lrelu (alpha default 0.2), tanh, sigmoid, silu. Inputs are float16,
bfloat16, float32 or float64 (16-bit computed in float32); conv outputs are
channels_last.
"""

from __future__ import annotations

import torch

from . import _backend
from . import _validate as V
from . import ops as _ops  # noqa: F401  (registers the custom ops)
from .ops import aten as _aten
from .ops import batch_norm as _bn_ops
from .ops import conv as _conv_ops
from .ops import linear as _linear_ops
from .ops import loss as _loss_ops
from .reference.conv import output_size
from .reference.loss import KINDS, REDUCTIONS

__all__ = [
    "conv2d_bias_act",
    "conv_transpose2d_bias_act",
    "linear_bias_act",
    "batch_norm_act",
    "discriminator_loss",
    "generator_loss",
]


# ------------------------------------------------------------------ dispatch
# Arguments are checked here, once; below this module nothing checks them again on the
# eager paths (the kernel launchers check a call signature the first time they see it).
# Three paths run an op:
#   traced     inside torch.compile / torch.export, or on tensor subclasses (fake
#              tensors, say): the torch.library custom ops, which those trace;
#   reference  backend 'reference' in eager mode: ATen's own ops and autograd
#              (fastgan.ops.aten), as cheap as the plain PyTorch model;
#   triton     backend 'triton' in eager mode: the ops' autograd Functions, which call
#              the kernel launchers directly (fastgan.ops._eager).
_PLAIN_TENSORS = (torch.Tensor, torch.nn.Parameter)


def _path(*tensors) -> str:
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return "traced"
    for t in tensors:
        if t is not None and type(t) not in _PLAIN_TENSORS:
            return "traced"
    return _backend.resolve(*tensors)


def _conv(x, weight, bias, stride, padding, output_padding, transposed, activation):
    x, weight, bias = V.autocast(x, weight, bias)
    path = _path(x, weight, bias)
    if path == "reference":
        return _aten.conv_bias_act(x, weight, bias, stride, padding, output_padding, transposed, *activation)
    op = torch.ops.fastgan.conv_bias_act if path == "traced" else _conv_ops.ConvBiasAct.apply
    return op(x, weight, bias, stride, padding, output_padding, transposed, *activation)[0]


def _linear(x, weight, bias, activation):
    x, weight, bias = V.autocast(x, weight, bias)
    path = _path(x, weight, bias)
    lead = x.shape[:-1]
    # reshape(-1, K) cannot infer the rows when K is 0; Size.numel() would specialise a
    # symbolic batch (torch.export with a dynamic batch), so it serves only that case.
    x2 = x.reshape(-1, x.shape[-1]) if x.shape[-1] != 0 else x.reshape(lead.numel(), 0)
    if path == "reference":
        y = _aten.linear_bias_act(x2, weight, bias, *activation)
    else:
        op = torch.ops.fastgan.linear_bias_act if path == "traced" else _linear_ops.LinearBiasAct.apply
        y = op(x2, weight, bias, *activation)[0]
    return y.reshape(*lead, weight.shape[0])


def _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps, act, alpha, count):
    # The ops work on [N, C, H, W]: [N, C] and [N, C, L] are views of that shape.
    # A 4-D x is passed as it is: reshape to the same shape can return an alias whose
    # size-1 dimensions carry other strides, and batch norm's backward through that
    # alias read a channels_last input's gradient in the wrong order (torch 2.13, CPU).
    x4 = x if x.dim() == 4 else x.reshape(*x.shape, *([1] * (4 - x.dim())))
    path = _path(x, running_mean, running_var, weight, bias)
    if path == "reference":  # ATen updates the running statistics itself
        y = _aten.batch_norm_act(x4, weight, bias, running_mean, running_var, training, momentum, eps, act, alpha)
        return y if x.dim() == 4 else y.reshape(x.shape)
    op = torch.ops.fastgan.batch_norm_act if path == "traced" else _bn_ops.BatchNormAct.apply
    y, _, mean, var = op(x4, weight, bias, running_mean, running_var, training, eps, act, alpha)
    if training:
        update_running_stats(running_mean, running_var, mean, var, momentum, count)
    return y if x.dim() == 4 else y.reshape(x.shape)


def update_running_stats(running_mean, running_var, mean, var, momentum, count):
    """nn.BatchNorm's running-statistics update from a batch's mean and biased var."""
    if running_mean is not None and count > 0:
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
            unbiased = var * (count / (count - 1))
            running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)


def _traced(*tensors) -> bool:
    return _path(*tensors) == "traced"


# Call signatures (shapes, dtypes, devices, checked arguments) that passed the checks,
# for the modules of fastgan.nn: a module's own arguments were checked when it was
# built, so a call like one already checked skips straight to dispatch.
_checked: set = set()
_MAX_CHECKED = 4096


def _seen(key) -> bool:
    """True if a call with this signature passed the checks. Symbolic sizes (traced
    graphs) are unhashable: those calls always take the public function's checks."""
    try:
        return key in _checked
    except TypeError:
        return False


def _remember(key) -> None:
    if len(_checked) >= _MAX_CHECKED:
        _checked.clear()
    try:
        _checked.add(key)
    except TypeError:
        pass


def _signature(*tensors) -> tuple:
    # A list, not a generator: every fused module call comes here.
    return tuple([None if t is None else (t.shape, t.dtype, t.device) for t in tensors])


def conv_for_module(x, weight, bias, stride, padding, output_padding, transposed, activation):
    """conv2d_bias_act / conv_transpose2d_bias_act for a fused module whose stride,
    padding, output_padding (tuples) and activation (V.activation's tuple) are checked."""
    try:
        key = ("conv", _signature(x, weight, bias), stride, padding, output_padding, transposed, activation,
               torch.is_autocast_enabled(x.device.type))
    except AttributeError:  # not a tensor: the public function says so
        key = None
    if key is None or not _seen(key):
        act, alpha, gain, clamp = activation
        if transposed:
            y = conv_transpose2d_bias_act(x, weight, bias, stride=stride, padding=padding,
                                          output_padding=output_padding, act=act, alpha=alpha, gain=gain, clamp=clamp)
        else:
            y = conv2d_bias_act(x, weight, bias, stride=stride, padding=padding, act=act, alpha=alpha, gain=gain,
                                clamp=clamp)
        _remember(key)
        return y
    return _conv(x, weight, bias, list(stride), list(padding), list(output_padding), transposed, activation)


def linear_for_module(x, weight, bias, activation):
    """linear_bias_act for a fused module whose activation tuple is checked."""
    try:
        key = ("linear", _signature(x, weight, bias), activation, torch.is_autocast_enabled(x.device.type))
    except AttributeError:
        key = None
    if key is None or not _seen(key):
        act, alpha, gain, clamp = activation
        y = linear_bias_act(x, weight, bias, act=act, alpha=alpha, gain=gain, clamp=clamp)
        _remember(key)
        return y
    return _linear(x, weight, bias, activation)


def batch_norm_for_module(x, running_mean, running_var, weight, bias, training, momentum, eps, act, alpha):
    """batch_norm_act for a fused module (act, alpha checked; momentum, eps floats)."""
    try:
        key = ("bn", _signature(x, running_mean, running_var, weight, bias), training, type(momentum), momentum,
               type(eps), eps, act, alpha)
    except AttributeError:
        key = None
    if key is None or not _seen(key):
        y = batch_norm_act(x, running_mean, running_var, weight, bias, training=training, momentum=momentum,
                           eps=eps, act=act, alpha=alpha)
        _remember(key)
        return y
    return _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps, act, alpha,
                       x.numel() // x.shape[1])


def _conv_args(x, weight, bias, stride, padding, dilation, groups, act, alpha, gain, clamp):
    V.tensor("x", x, ndim=4)
    V.tensor("weight", weight, ndim=4)
    V.tensor("bias", bias, ndim=1, optional=True)
    V.unsupported("groups", groups)
    V.unsupported("dilation", dilation)
    V.same_device(x=x, weight=weight, bias=bias)
    V.same_dtype(x=x, weight=weight, bias=bias)
    # As F.conv2d: a batch of 0 is fine, an image of 0 pixels is not.
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(
            f"x has spatial size {tuple(x.shape[2:])}: only the batch and channel dimensions may be 0"
        )
    stride = V.pair("stride", stride, minimum=1)
    padding = V.pair("padding", padding, minimum=0)
    return stride, padding, V.activation(act, alpha, gain, clamp)


def _check_output(out_hw, x, kernel_hw, what):
    if out_hw[0] < 1 or out_hw[1] < 1:
        raise ValueError(
            f"x of spatial size {tuple(x.shape[2:])} is too small for a {tuple(kernel_hw)} "
            f"{what}: the output would be {tuple(out_hw)}"
        )


def conv2d_bias_act(
    x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, act="linear", alpha=None, gain=None, clamp=None
):
    """clamp(act(F.conv2d(x, weight, bias, stride, padding)) * gain, -clamp, clamp).

    x [N, C_in, H, W], weight [C_out, C_in, kh, kw], bias [C_out] or None.
    """
    stride, padding, activation = _conv_args(x, weight, bias, stride, padding, dilation, groups, act, alpha, gain, clamp)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight expects {weight.shape[1]} input channels (shape {tuple(weight.shape)}) "
            f"but x has {x.shape[1]}"
        )
    if bias is not None and bias.shape[0] != weight.shape[0]:
        raise ValueError(f"bias must have {weight.shape[0]} elements (C_out), got {bias.shape[0]}")
    if weight.shape[0] == 0:
        raise ValueError(f"weight has 0 output channels (shape {tuple(weight.shape)}): F.conv2d needs at least 1")
    if x.shape[1] == 0:
        # F.conv2d returns an [N, 0, OH, OW] result here (C_out dropped, bias ignored):
        # refused rather than copied or contradicted.
        raise ValueError(f"x has 0 channels (shape {tuple(x.shape)}): fastgan's conv2d needs at least 1")
    out_hw = output_size(x.shape[2:], weight.shape[2:], stride, padding, [0, 0], transposed=False)
    _check_output(out_hw, x, weight.shape[2:], "convolution")
    return _conv(x, weight, bias, stride, padding, [0, 0], False, activation)


def conv_transpose2d_bias_act(
    x,
    weight,
    bias=None,
    *,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    groups=1,
    act="linear",
    alpha=None,
    gain=None,
    clamp=None,
):
    """clamp(act(F.conv_transpose2d(x, weight, bias, stride, padding, output_padding)) * gain).

    x [N, C_in, H, W], weight [C_in, C_out, kh, kw], bias [C_out] or None.
    """
    stride, padding, activation = _conv_args(x, weight, bias, stride, padding, dilation, groups, act, alpha, gain, clamp)
    output_padding = V.pair("output_padding", output_padding, minimum=0)
    if any(op >= s for op, s in zip(output_padding, stride)):
        raise ValueError(f"output_padding must be smaller than stride {tuple(stride)}, got {tuple(output_padding)}")
    if weight.shape[0] != x.shape[1]:
        raise ValueError(
            f"weight expects {weight.shape[0]} input channels (shape {tuple(weight.shape)}, "
            f"[C_in, C_out, kh, kw]) but x has {x.shape[1]}"
        )
    if bias is not None and bias.shape[0] != weight.shape[1]:
        raise ValueError(f"bias must have {weight.shape[1]} elements (C_out), got {bias.shape[0]}")
    if weight.shape[0] == 0 or weight.shape[1] == 0:
        raise ValueError(
            f"weight has shape {tuple(weight.shape)} ([C_in, C_out, kh, kw]): F.conv_transpose2d needs "
            "at least 1 input and 1 output channel"
        )
    out_hw = output_size(x.shape[2:], weight.shape[2:], stride, padding, output_padding, transposed=True)
    _check_output(out_hw, x, weight.shape[2:], "transposed convolution")
    return _conv(x, weight, bias, stride, padding, output_padding, True, activation)


def linear_bias_act(x, weight, bias=None, *, act="linear", alpha=None, gain=None, clamp=None):
    """clamp(act(F.linear(x, weight, bias)) * gain); x [..., in], weight [out, in]."""
    V.tensor("x", x)
    V.tensor("weight", weight, ndim=2)
    V.tensor("bias", bias, ndim=1, optional=True)
    V.same_device(x=x, weight=weight, bias=bias)
    V.same_dtype(x=x, weight=weight, bias=bias)
    if x.dim() == 0:
        raise ValueError("x must have at least 1 dimension, got a 0-D tensor")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"weight expects {weight.shape[1]} input features (shape {tuple(weight.shape)}) "
            f"but x has {x.shape[-1]}"
        )
    if bias is not None and bias.shape[0] != weight.shape[0]:
        raise ValueError(f"bias must have {weight.shape[0]} elements (out_features), got {bias.shape[0]}")
    return _linear(x, weight, bias, V.activation(act, alpha, gain, clamp))


def batch_norm_act(
    x, running_mean, running_var, weight=None, bias=None, *, training, momentum=0.1, eps=1e-5, act="linear", alpha=None
):
    """act(F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)).

    x [N, C], [N, C, L] or [N, C, H, W], as nn.BatchNorm1d / nn.BatchNorm2d take; in
    training the running statistics (if given) are updated in place exactly as
    F.batch_norm does (and, as there, left alone by a batch with no values).
    """
    V.tensor("x", x, ndim=(2, 3, 4))
    if x.shape[1] == 0:
        raise ValueError(f"x has 0 channels (shape {tuple(x.shape)}): batch norm needs at least 1")
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        V.tensor(name, t, ndim=1, optional=True)
        if t is not None and t.shape[0] != x.shape[1]:
            raise ValueError(f"{name} must have {x.shape[1]} elements (the channels of x), got {t.shape[0]}")
    V.same_device(x=x, running_mean=running_mean, running_var=running_var, weight=weight, bias=bias)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together (or both None)")
    if not isinstance(training, bool):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    if not training and running_mean is None:
        raise ValueError("running_mean and running_var are required when training=False")
    momentum = V.finite_number("momentum", momentum)
    eps = V.finite_number("eps", eps)
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    act, alpha, _, _ = V.activation(act, alpha, None, None)
    count = x.numel() // x.shape[1]
    if training and count == 1:
        # F.batch_norm's rule: exactly one value per channel has no variance; none at all
        # (an empty batch) gives an empty result.
        raise ValueError(
            f"x has 1 value per channel (shape {tuple(x.shape)}): batch norm needs more than 1 when training"
        )
    return _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps, act, alpha, count)


def _logits(name, t):
    # Empty logits are fine, as in F.binary_cross_entropy_with_logits: 'mean' gives NaN
    # (the mean of nothing), 'sum' 0, 'none' an empty tensor.
    V.tensor(name, t)
    return t


def _loss_args(kind, reduction):
    V.choice("kind", kind, KINDS)
    V.choice("reduction", reduction, REDUCTIONS)


def discriminator_loss(real_logits, fake_logits, kind="nonsaturating", *, real_label=1.0, reduction="mean"):
    """Discriminator loss: mean(real terms) + mean(fake terms) (see fastgan.reference.loss).

    reduction 'none' returns the pair (real terms, fake terms), each shaped like its
    logits. Losses are float32 for 16-bit logits.
    """
    _logits("real_logits", real_logits)
    _logits("fake_logits", fake_logits)
    V.same_device(real_logits=real_logits, fake_logits=fake_logits)
    V.same_dtype(real_logits=real_logits, fake_logits=fake_logits)
    _loss_args(kind, reduction)
    real_label = V.real_label(kind, real_label)
    op = torch.ops.fastgan.discriminator_loss if _traced(real_logits, fake_logits) else _loss_ops.DiscriminatorLoss.apply
    out_real, out_fake, _, _ = op(real_logits, fake_logits, kind, real_label, reduction)
    return (out_real, out_fake) if reduction == "none" else out_real + out_fake


def generator_loss(fake_logits, kind="nonsaturating", *, reduction="mean"):
    """Generator loss: mean of the G terms (see fastgan.reference.loss)."""
    _logits("fake_logits", fake_logits)
    _loss_args(kind, reduction)
    op = torch.ops.fastgan.generator_loss if _traced(fake_logits) else _loss_ops.GeneratorLoss.apply
    out, _ = op(fake_logits, kind, reduction)
    return out
