"""A conv -> batch norm -> activation block in training mode as one eager autograd
Function (ConvBatchNormAct), on the Triton kernels: two launches forward, two or three
backward, where the separate ops take three to four each.

Forward: the conv kernel's epilogue also reduces the batch statistics of its output
(kernels.conv.conv_fwd_bn_stats), then one normalize + act launch
(kernels.batch_norm.bn_normalize), which also updates float32 running statistics
(nn.BatchNorm's update, the same bits as its PyTorch ops; other dtypes are updated
with those ops). A conv that runs as the single-pixel GEMM (a generator's 1 x 1
latent input) keeps its separate batch-norm launch and updates them with the ops.

Backward (first order): the batch norm's input gradient is never stored. Its sums
(sum gz, sum gz (x - mean)) give four per-channel coefficients
(kernels.batch_norm.bn_fold_coefficients, one launch), and the conv's input- and
weight-gradient kernels compute that gradient from dL/dy, the saved output, the conv
output and the coefficients as they load it (kernels/_conv_bn.py).

Blocks in a row: a block's output carries a BlockLink (its saved tensors). The block
that consumes it computes those sums in the epilogue of its own input-gradient launch
and leaves them in the link; the producer's backward takes them when the gradient it
receives is the very tensor they were computed from (one consumer, nothing added to
it), so it launches no sums of its own. Otherwise it computes them itself: results do
not depend on which way they were computed (the same sums in a fixed order, within
rounding of the summation order).

Higher order (create_graph=True: R1, WGAN-GP): the backward recomputes the block with
the separate differentiable ops (fastgan.ops.conv, fastgan.ops.batch_norm) and
differentiates that, so every gradient of any order is the per-layer path's.
Eval mode, torch.compile / export and backend 'reference' never come here: the module
runs the separate ops (fastgan.nn.modules.Conv2dBatchNormAct).
"""

from __future__ import annotations

import torch

from .._dtypes import accumulator as accumulator_dtype
from ..kernels import batch_norm as KB
from ..kernels import conv as KC
from ..reference import activations as A
from ..reference.conv import output_size
from . import batch_norm as _bn_ops
from . import _eager
from . import conv as _conv_ops

LINK_ATTRIBUTE = "_fastgan_block_link"


class BlockLink:
    """What a block's consumer needs to compute the block's backward sums: its saved
    tensor of the activation (None when that is the output itself, which the consumer
    holds: no reference cycle through the output), batch-norm input, statistics,
    weight and activation. `sums`: (the gradient they were computed from, coef, gw, gb)
    once a consumer computed them."""

    __slots__ = ("s", "x", "mean", "var", "weight", "eps", "act", "alpha", "version", "sums", "__weakref__")

    def __init__(self):
        self.clear()

    def fill(self, s, x, mean, var, weight, eps, act, alpha):
        self.s, self.x, self.mean, self.var, self.weight = s, x, mean, var, weight
        self.eps, self.act, self.alpha = eps, act, alpha

    def clear(self):
        """Drop every reference (the producer's backward has run)."""
        self.fill(None, None, None, None, None, None, None, None)
        self.version = None
        self.sums = None

    def kernel_args(self, output):
        """The `link` argument of kernels.conv.conv_grad_input_bn, given the block's output."""
        s = output if self.s is None else self.s
        return (s, self.x, self.mean, self.var, self.weight, self.eps, self.act, self.alpha)

    def take(self, grad):
        """(coef, gw, gb) computed by the consumer from exactly `grad`, else None."""
        sums, self.sums = self.sums, None
        if sums is not None and sums[0] is grad:
            return sums[1:]
        return None


def incoming_link(x):
    """The BlockLink of the block that produced x, if x is still what it produced."""
    link = getattr(x, LINK_ATTRIBUTE, None)
    if link is None or link.version != x._version:
        return None
    return link


def _channels_last(t):
    return t.is_contiguous(memory_format=torch.channels_last)


def _derive_shapes(x_hw, kernel_hw, geometry):
    stride, padding, output_padding, transposed = geometry
    out_hw = output_size(x_hw, kernel_hw, stride, padding, output_padding, transposed)
    # The input gradient runs the other product: a transposed kernel when the conv is not.
    return (out_hw, KC.single_pixel(transposed, x_hw, padding, out_hw, kernel_hw),
            KC.single_pixel(not transposed, out_hw, padding, x_hw, kernel_hw))


_shape_cache: dict = {}


def _shapes(x_hw, kernel_hw, geometry):
    """(output size, whether the forward conv runs as the single-pixel GEMM, whether its
    input gradient does), worked out once per (sizes, geometry): a training step
    repeats them. A geometry of lists (unhashable) is worked out every call."""
    try:
        key = (x_hw, kernel_hw, geometry)
        found = _shape_cache.get(key)
    except TypeError:
        return _derive_shapes(x_hw, kernel_hw, geometry)
    if found is None:
        if len(_shape_cache) >= 4096:
            _shape_cache.clear()
        found = _shape_cache[key] = _derive_shapes(x_hw, kernel_hw, geometry)
    return found


def block_forward(x, weight, bias, bn_weight, bn_bias, geometry, eps, act, alpha, running):
    """The block's forward launches: (y, saved, cfg), where saved = (xc, s, mean, var)
    are the tensors its backward reads besides its inputs and cfg its settings. Shared
    by ConvBatchNormAct and the layer chains of fastgan.ops.chain."""
    stride, padding, output_padding, transposed = geometry
    out_hw, fwd_single_pixel, dgrad_single_pixel = _shapes(x.shape[2:], weight.shape[2:], geometry)
    # The batch statistics come in x's accumulator dtype from either path below.
    update = _in_kernel_update(running, accumulator_dtype(x.dtype), x.shape[0] * out_hw[0] * out_hw[1])
    if fwd_single_pixel or x.shape[0] == 0:
        xc, _ = KC.conv_fwd(x, weight, bias, stride, padding, output_padding, transposed, "linear",
                            A.DEFAULT_ALPHA, 1.0, None)
        y, z, mean, var = KB.bn_fwd(xc, bn_weight, bn_bias, None, None, True, eps, act, alpha, update)
    else:
        xc, stats = KC.conv_fwd_bn_stats(x, weight, bias, stride, padding, output_padding, transposed)
        stats = stats.unbind(0)  # (mean, var, shift): one call for the three views
        mean, var = stats[0], stats[1]
        y, z = KB.bn_normalize(xc, bn_weight, bn_bias, stats, eps, act, alpha, update)
    if update is None:
        _update_on_host(running, mean, var, xc)
    if A.needs_preactivation(act):
        s = z
    elif A.needs_saved(act, None):
        s = y
    else:
        s = xc  # act linear: never read, but the kernels take s's strides for the conv output
    return y, (xc, s, mean, var), (geometry, eps, act, alpha, out_hw, dgrad_single_pixel)


def block_backward(cfg, link, in_link, needs, gy, x, weight, bn_weight, xc, s, mean, var):
    """First-order gradients (x, w, b, bn_w, bn_b) of a block, None where `needs` says
    so. link: the BlockLink of the block's output (its consumer may have computed the
    sums), in_link: that of the block which produced x (this backward computes its sums)."""
    (stride, padding, output_padding, transposed), eps, act, alpha, out_hw, dgrad_single_pixel = cfg
    sums = link.take(gy) if link is not None else None
    if sums is None:
        sums = KB.bn_fold_coefficients(gy, s, xc, bn_weight, mean, var, eps, act, alpha)
    coef, g_bn_w, g_bn_b = sums
    if link is not None:
        link.clear()
    gx = gw = gb = None
    if needs[0]:
        if dgrad_single_pixel:
            gx = _unfolded_grad_input(gy, s, xc, bn_weight, mean, var, eps, act, alpha, weight, x, cfg)
        else:
            link_args = None
            if in_link is not None and in_link.x is not None and _channels_last(x) and _channels_last(in_link.x) \
                    and (in_link.s is None or _channels_last(in_link.s)):
                link_args = in_link.kernel_args(x)
            gx, in_sums = KC.conv_grad_input_bn(gy, s, xc, coef, weight, list(x.shape[2:]), stride, padding,
                                                transposed, act, alpha, link=link_args)
            if in_sums is not None:
                in_link.sums = (gx, *in_sums)
    if needs[1] or needs[2]:
        gw, gb = KC.conv_grad_weight_bn(gy, s, xc, coef, x, list(weight.shape[2:]), stride, padding, transposed,
                                        act, alpha, bool(needs[2]))
        gw = gw if needs[1] else None
        gb = gb if needs[2] else None
    return gx, gw, gb, g_bn_w if needs[3] else None, g_bn_b if needs[4] else None


class ConvBatchNormAct(torch.autograd.Function):
    """y = act(batch_norm(conv(x, w) + b)) with batch statistics; `running` (see
    conv_batch_norm_act) updated in place. The statistics are saved, not returned: one
    output is less autograd bookkeeping per call."""

    @staticmethod
    def forward(ctx, x, weight, bias, bn_weight, bn_bias, geometry, eps, act, alpha, link, in_link, running):
        y, (xc, s, mean, var), cfg = block_forward(x, weight, bias, bn_weight, bn_bias, geometry, eps, act, alpha,
                                                   running)
        ctx.set_materialize_grads(False)
        ctx.cfg = cfg
        ctx.save_for_backward(x, weight, bias, bn_weight, bn_bias, xc, s, mean, var)
        ctx.link, ctx.in_link = link, in_link
        if link is not None:
            link.fill(None if s is y else s, xc, mean, var, bn_weight, eps, act, alpha)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, bias, bn_weight, bn_bias, xc, s, mean, var = ctx.saved_tensors
        if gy is None:
            return (None,) * 12
        if torch.is_grad_enabled():
            return recomputed_backward(ctx.cfg, ctx.needs_input_grad, gy, x, weight, bias, bn_weight,
                                       bn_bias) + (None,) * 7
        return block_backward(ctx.cfg, ctx.link, ctx.in_link, ctx.needs_input_grad, gy, x, weight, bn_weight, xc,
                              s, mean, var) + (None,) * 7


# ConvBatchNormAct.apply without autograd.Function.apply's Python layer (fastgan.ops._eager).
_apply = _eager._direct_apply(ConvBatchNormAct)


def _unfolded_grad_input(gy, s, xc, bn_weight, mean, var, eps, act, alpha, weight, x, cfg):
    """dL/dx through a stored batch-norm input gradient: for an input gradient that
    runs as the single-pixel GEMM, which has no folded form."""
    (stride, padding, _, transposed), *_ = cfg
    g_bn, _, _ = KB.bn_backward(gy, s, xc, bn_weight, mean, var, True, eps, act, alpha, False)
    return KC.conv_grad_input(g_bn, None, weight, list(x.shape[2:]), stride, padding, transposed, "linear",
                              A.DEFAULT_ALPHA, 1.0, None)


def recomputed_backward(cfg, needs, gy, x, weight, bias, bn_weight, bn_bias):
    """Gradients of (x, w, b, bn_w, bn_b) for a higher-order graph: the block
    recomputed with the separate differentiable ops, then differentiated."""
    (stride, padding, output_padding, transposed), eps, act, alpha, _, _ = cfg
    inputs = (x, weight, bias, bn_weight, bn_bias)
    wanted = [i for i, t in enumerate(inputs) if t is not None and needs[i]]
    with torch.enable_grad():
        xc = _conv_ops.ConvBiasAct.apply(x, weight, bias, list(stride), list(padding), list(output_padding),
                                         transposed, "linear", A.DEFAULT_ALPHA, 1.0, None)[0]
        y = _bn_ops.BatchNormAct.apply(xc, bn_weight, bn_bias, None, None, True, eps, act, alpha)[0]
        grads = torch.autograd.grad(y, [inputs[i] for i in wanted], gy, create_graph=True, allow_unused=True)
    out = [None] * 5
    for i, g in zip(wanted, grads):
        out[i] = g
    return tuple(out)


def _in_kernel_update(running, stats_dtype, count):
    """(running_mean, running_var, momentum, var_factor, num_batches_tracked) for the
    normalize launch to update in place, when it can: float32 running statistics from
    float32 batch statistics, more than one value per channel; else None
    (_update_on_host does it)."""
    if running is None:
        return None
    mean, var, momentum, counter = running
    if (mean is None or var is None or count <= 1 or mean.dtype != torch.float32 or var.dtype != torch.float32
            or stats_dtype != torch.float32):
        return None
    return mean, var, momentum, count / (count - 1), counter


def _update_on_host(running, mean, var, xc):
    """nn.BatchNorm's running-statistics update (and batch count) with PyTorch ops: what
    the normalize launch does in _in_kernel_update's case; xc the batch norm's input."""
    if running is not None:
        from ..functional import update_running_stats

        if running[3] is not None:
            running[3].add_(1)
        update_running_stats(running[0], running[1], mean, var, running[2], xc.numel() // xc.shape[1])


def conv_batch_norm_act(x, weight, bias, bn_weight, bn_bias, geometry, eps, act, alpha, running=None):
    """y of the block, carrying the BlockLink its consumer may use when a backward
    will run. running = (running_mean, running_var, momentum, num_batches_tracked or
    None): the forward also updates them as nn.BatchNorm does (None, or None
    statistics: no update), and counts the batch in num_batches_tracked when given
    (nn.BatchNorm counts before its forward; only momentum=None reads the count, so
    its callers count on the host themselves and pass None)."""
    track = torch.is_grad_enabled()
    link = BlockLink() if track else None
    y = _apply(x, weight, bias, bn_weight, bn_bias, geometry, eps, act, alpha, link,
               incoming_link(x) if track else None, running)
    if link is not None and y.requires_grad:
        link.version = y._version
        setattr(y, LINK_ATTRIBUTE, link)
    return y
