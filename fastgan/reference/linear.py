"""Reference for linear + bias + activation (oracle and backend functions).

The backend functions take x as a 2-D matrix [M, K]; fastgan.functional flattens the
leading dimensions. fastgan.kernels.linear implements the same three functions.
"""

from __future__ import annotations

import torch.nn.functional as F

from .activations import act_grad, bias_act, clamp_as_saved, needs_preactivation
from ._common import empty_like_nothing, upcast


def linear_bias_act(x, weight, bias=None, *, act="linear", alpha=None, gain=None, clamp=None):
    z = F.linear(x, weight, bias)
    return bias_act(z, act, alpha, gain, clamp)


def linear_fwd(x, weight, bias, act, alpha, gain, clamp):
    """(y, z) for x [M, K], weight [N, K]; z is empty unless the act needs it."""
    z = F.linear(upcast(x), upcast(weight), upcast(bias))
    y = bias_act(z, act, alpha, gain, clamp).to(x.dtype)
    if needs_preactivation(act):
        return y, z.to(x.dtype)
    return y, empty_like_nothing(x)


def linear_grad_input(grad, s, weight, act, alpha, gain, clamp):
    gz = act_grad(upcast(grad), upcast(s), act, alpha, gain, clamp_as_saved(clamp, act, s.dtype))
    return (gz @ upcast(weight)).to(grad.dtype)


def linear_grad_weight(grad, s, x, act, alpha, gain, clamp, need_bias):
    gz = act_grad(upcast(grad), upcast(s), act, alpha, gain, clamp_as_saved(clamp, act, s.dtype))
    gw = (gz.transpose(0, 1) @ upcast(x)).to(x.dtype)
    gb = gz.sum(0).to(grad.dtype) if need_bias else empty_like_nothing(grad)
    return gw, gb
