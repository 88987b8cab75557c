"""Reference for batch norm + activation (oracle and backend functions).

Backend functions work on x of shape [N, C, H, W] in either memory format and return
y in the memory format of x. Statistics are computed in float32 (float64 for float64
input), and the variance from centred values, so large means cost no precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .activations import act_grad, bias_act, needs_preactivation
from ._common import compute_dtype, empty_like_nothing, upcast


def batch_norm_act(
    x, running_mean, running_var, weight=None, bias=None, *, training, momentum=0.1, eps=1e-5, act="linear", alpha=None
):
    z = F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    return bias_act(z, act, alpha, 1.0, None)


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    return t.view(1, -1, 1, 1)


def batch_stats(x: torch.Tensor):
    """(mean, biased variance) per channel, in the compute dtype."""
    xc = upcast(x)
    mean = xc.mean(dim=(0, 2, 3))
    var = (xc - _per_channel(mean)).square().mean(dim=(0, 2, 3))
    return mean, var


def _normalize(x, weight, bias, mean, var, eps):
    rstd = torch.rsqrt(upcast(var) + eps)
    z = (upcast(x) - _per_channel(upcast(mean))) * _per_channel(rstd)
    if weight is not None:
        z = z * _per_channel(upcast(weight))
    if bias is not None:
        z = z + _per_channel(upcast(bias))
    return z


def bn_fwd(x, weight, bias, running_mean, running_var, training, eps, act, alpha):
    """(y, z, mean, var). In training mean/var are the batch statistics (var biased,
    float32); in eval they are empty and the running statistics are used. z is empty
    unless the act needs the pre-activation. Running statistics are not touched here:
    fastgan.functional updates them from the returned mean/var."""
    if training:
        mean, var = batch_stats(x)
        z = _normalize(x, weight, bias, mean, var, eps)
    else:
        mean = x.new_empty(0, dtype=compute_dtype(x.dtype))
        var = x.new_empty(0, dtype=compute_dtype(x.dtype))
        z = _normalize(x, weight, bias, running_mean, running_var, eps)
    y = torch.empty_like(x)
    y.copy_(bias_act(z, act, alpha, 1.0, None))
    if needs_preactivation(act):
        zt = torch.empty_like(x)
        zt.copy_(z)
        return y, zt, mean, var
    return y, empty_like_nothing(x), mean, var


def bn_backward_formula(grad, s, x, weight, mean, var, training, eps, act, alpha):
    """(gx, gw, gb) as differentiable PyTorch, in the compute dtype.

    When `training`, mean and var must be the batch statistics of x; pass them computed
    differentiably from x (batch_stats) to get correct higher-order gradients.
    """
    gz = act_grad(upcast(grad), upcast(s), act, alpha, 1.0, None)
    rstd = torch.rsqrt(upcast(var) + eps)
    xhat = (upcast(x) - _per_channel(upcast(mean))) * _per_channel(rstd)
    gb = gz.sum(dim=(0, 2, 3))
    gw = (gz * xhat).sum(dim=(0, 2, 3))
    scale = rstd if weight is None else rstd * upcast(weight)
    if training:
        n = x.numel() // x.shape[1]
        gx = _per_channel(scale) * (gz - _per_channel(gb / n) - xhat * _per_channel(gw / n))
    else:
        gx = gz * _per_channel(scale)
    return gx, gw, gb


def bn_backward(grad, s, x, weight, mean, var, training, eps, act, alpha, need_affine):
    """(gx, gw, gb); gw/gb empty unless need_affine. gx in the memory format of x.
    mean/var are the batch statistics in training, the running statistics in eval."""
    gx, gw, gb = bn_backward_formula(grad, s, x, weight, mean, var, training, eps, act, alpha)
    gx_out = torch.empty_like(x)
    gx_out.copy_(gx)
    if not need_affine:
        return gx_out, x.new_empty(0, dtype=compute_dtype(x.dtype)), x.new_empty(0, dtype=compute_dtype(x.dtype))
    pdtype = x.dtype if weight is None else weight.dtype
    return gx_out, gw.to(pdtype), gb.to(pdtype)
