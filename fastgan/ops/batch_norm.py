"""Custom ops of batch norm + activation (namespace fastgan).

The forward op is functional: it returns the batch mean and (biased) variance, and
fastgan.functional updates the running statistics from them, so the op itself never
mutates its inputs (which is what lets it carry an autograd formula and trace under
torch.compile). The backward runs one fused op; when a higher-order graph is being
built (create_graph=True) it runs the differentiable reference formula instead, with
the statistics recomputed from x so that their dependence on x is differentiated too.
Outside torch.compile / export both ops run as autograd Functions (BatchNormAct,
BatchNormActBackward) with the same formulas (see fastgan.ops.conv).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .. import _backend
from ..reference import batch_norm as ref
from ..reference._common import compute_dtype
from ..reference.activations import act_grad, needs_preactivation
from . import _bilinear as B
from . import _eager


def _impl(*tensors):
    return _backend.implementation("batch_norm", *tensors)


@torch.library.custom_op("fastgan::batch_norm_act", mutates_args=())
def batch_norm_act(
    x: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    training: bool,
    eps: float,
    act: str,
    alpha: float,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    return batch_norm_act_run(x, weight, bias, running_mean, running_var, training, eps, act, alpha)


@batch_norm_act.register_fake
def _(x, weight, bias, running_mean, running_var, training, eps, act, alpha):
    y = torch.empty_like(x)
    z = torch.empty_like(x) if needs_preactivation(act) else x.new_empty(0)
    stats_shape = (x.shape[1],) if training else (0,)
    stats_dtype = compute_dtype(x.dtype)
    return y, z, x.new_empty(stats_shape, dtype=stats_dtype), x.new_empty(stats_shape, dtype=stats_dtype)


@torch.library.custom_op("fastgan::batch_norm_act_backward", mutates_args=())
def batch_norm_act_backward(
    grad: Tensor,
    saved: Tensor,
    x: Tensor,
    weight: Optional[Tensor],
    mean: Tensor,
    var: Tensor,
    training: bool,
    eps: float,
    act: str,
    alpha: float,
    need_affine: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    return batch_norm_act_backward_run(grad, saved, x, weight, mean, var, training, eps, act, alpha, need_affine)


@batch_norm_act_backward.register_fake
def _(grad, saved, x, weight, mean, var, training, eps, act, alpha, need_affine):
    gx = torch.empty_like(x)
    if not need_affine:
        return gx, x.new_empty(0, dtype=compute_dtype(x.dtype)), x.new_empty(0, dtype=compute_dtype(x.dtype))
    pdtype = x.dtype if weight is None else weight.dtype
    return gx, x.new_empty(x.shape[1], dtype=pdtype), x.new_empty(x.shape[1], dtype=pdtype)


def _setup(ctx, inputs, output, backward_op=None):
    x, weight, bias, running_mean, running_var, training, eps, act, alpha = inputs
    y, z, mean, var = output
    ctx.set_materialize_grads(False)
    ctx.backward_op = backward_op or torch.ops.fastgan.batch_norm_act_backward
    ctx.mark_non_differentiable(mean, var)
    ctx.cfg = (training, eps, act, alpha)
    if not training:
        mean, var = running_mean, running_var
    saved = B.saved_for_backward(B.Act(act, alpha, 1.0, None), y, z)
    ctx.save_for_backward(x, weight, mean, var, saved)


def _backward(ctx, gy, gz, _gmean, _gvar):
    x, weight, mean, var, saved = ctx.saved_tensors
    training, eps, act, alpha = ctx.cfg
    gz = B.none_if_empty(gz)
    if gy is None and gz is None:
        return (None,) * 9
    if gz is not None:  # only in higher-order graphs through silu's saved pre-activation
        pre = gz if gy is None else act_grad(gy, saved, act, alpha, 1.0, None) + gz
        gy, saved, act = pre, pre.new_empty(0), "linear"
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    gx, gw, gb = ctx.backward_op(
        gy, saved, x, weight, mean, var, training, eps, act, alpha, bool(need_w or need_b)
    )
    return (
        gx if need_x else None,
        gw if need_w else None,
        gb if need_b else None,
        None, None, None, None, None, None,
    )


batch_norm_act.register_autograd(_backward, setup_context=_setup)


def _backward_setup(ctx, inputs, output):
    grad, saved, x, weight, mean, var, training, eps, act, alpha, need_affine = inputs
    ctx.set_materialize_grads(False)
    ctx.cfg = (training, eps, act, alpha)
    ctx.has_weight = weight is not None
    ctx.save_for_backward(grad, saved, x, weight, mean, var)


def _backward_backward(ctx, ggx, ggw, ggb):
    """Second order through the reference formula. mean/var are treated as the
    functions of x they are (recomputed from x in training), so they get no gradient
    of their own."""
    grad, saved, x, weight, mean, var = ctx.saved_tensors
    training, eps, act, alpha = ctx.cfg

    def formula(grad, saved, x, *maybe_weight):
        w = maybe_weight[0] if maybe_weight else None
        m, v = ref.batch_stats(x) if training else (mean, var)
        return ref.bn_backward_formula(grad, saved, x, w, m, v, training, eps, act, alpha)

    primals = (grad, saved, x) + ((weight,) if ctx.has_weight else ())
    outs, vjp_fn = torch.func.vjp(formula, *primals)
    cotangents = tuple(
        torch.zeros_like(o) if B.none_if_empty(g) is None else g.to(o.dtype)
        for o, g in zip(outs, (ggx, ggw, ggb))
    )
    grads = vjp_fn(cotangents)
    g_grad, g_saved, g_x = grads[:3]
    g_w = grads[3] if ctx.has_weight else None
    if saved.numel() == 0:
        g_saved = None
    return g_grad, g_saved, g_x, g_w, None, None, None, None, None, None, None


batch_norm_act_backward.register_autograd(_backward_backward, setup_context=_backward_setup)


# ----------------------------------------------------------------------------- eager
def batch_norm_act_run(x, weight, bias, running_mean, running_var, training, eps, act, alpha):
    return _impl(x, weight, bias).bn_fwd(x, weight, bias, running_mean, running_var, training, eps, act, alpha)


def batch_norm_act_backward_run(grad, saved, x, weight, mean, var, training, eps, act, alpha, need_affine):
    return _impl(grad, x, weight).bn_backward(grad, saved, x, weight, mean, var, training, eps, act, alpha,
                                              need_affine)


BatchNormActBackward = _eager.function("BatchNormActBackward", batch_norm_act_backward_run, _backward_setup,
                                       _backward_backward)
BatchNormAct = _eager.function("BatchNormAct", batch_norm_act_run,
                               lambda ctx, i, o: _setup(ctx, i, o, _eager.call(BatchNormActBackward)), _backward)
