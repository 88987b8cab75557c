"""Autograd shared by the bilinear op families: conv2d, conv_transpose2d and linear.

Each family has three custom ops, F being bilinear in (x, w):
    fwd(x, w, b)          -> (y, z),  y = epi(F(x, w) + b), z = pre-activation or empty
    grad_input(g, s, w)   -> F_w^T(gz)               with gz = act_grad(g, s)
    grad_weight(g, s, x)  -> (d<gz, F(x, .)>/dw, sum gz)
where s is what the forward saved (y; z for silu; empty for linear without clamp).

The backward of each op is written with the three ops themselves (plus elementwise
PyTorch for the activation derivative), so gradients of any order stay on the fused
kernels: that is what makes R1 and WGAN-GP penalties run on the fast path.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Protocol

import torch

from ..reference import activations as A
from . import _eager


class Act(NamedTuple):
    act: str
    alpha: float
    gain: float
    clamp: float | None


IDENTITY = Act("linear", A.DEFAULT_ALPHA, 1.0, None)


class BilinearOps(Protocol):
    """The three ops of a family with their geometry bound (see conv.py, linear.py)."""

    def fwd(self, x, w, b, act: Act): ...

    def grad_input(self, g, s, w, act: Act): ...

    def grad_weight(self, g, s, x, act: Act, need_bias: bool): ...

    def broadcast_channels(self, v, like): ...


class Calls(NamedTuple):
    """How a family's three ops are called: its torch.library ops (inside traced
    graphs) or its autograd Functions (eager, see eager_calls)."""

    fwd: Callable
    grad_input: Callable
    grad_weight: Callable


def eager_calls(fwd, grad_input, grad_weight) -> Calls:
    """Calls of a family's eager autograd Functions (fastgan.ops._eager)."""
    return Calls(_eager.call(fwd), _eager.call(grad_input), _eager.call(grad_weight))


def saved_for_backward(act: Act, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The tensor the backward applies the activation derivative from."""
    if A.needs_preactivation(act.act):
        return z
    if A.needs_saved(act.act, act.clamp):
        return y
    return y.new_empty(0)


def none_if_empty(t):
    """Gradients of the empty stand-in outputs arrive as None or as empty tensors."""
    return None if t is None or t.numel() == 0 else t


def _act_grad(g, s, act: Act):
    return A.act_grad(g, s, act.act, act.alpha, act.gain, act.clamp)


def _act_grad_saved_vjp(g, s, v, act: Act):
    if s.numel() == 0:
        return None
    return A.act_grad_saved_vjp(g, s, v, act.act, act.alpha, act.gain, act.clamp)


def fwd_backward(ops: BilinearOps, needs, act: Act, x, w, s, gy, gz):
    """Gradients (x, w, b) of fwd, given dL/dy and (silu, second order only) dL/dz."""
    if gz is not None:
        # dL/dz arrives only when a higher-order graph used the saved pre-activation:
        # fold both into one pre-activation gradient and run the ops with no epilogue.
        total = gz if gy is None else _act_grad(gy, s, act) + gz
        gy, s, act = total, total.new_empty(0), IDENTITY
    if gy is None:
        return None, None, None
    gx = ops.grad_input(gy, s, w, act) if needs[0] else None
    gw = gb = None
    if needs[1] or needs[2]:
        gw, gb = ops.grad_weight(gy, s, x, act, bool(needs[2]))
        gw = gw if needs[1] else None
        gb = gb if needs[2] else None
    return gx, gw, gb


def grad_input_backward(ops: BilinearOps, needs, act: Act, g, s, w, ggx):
    """Gradients (g, s, w) of grad_input, given dL/d(gx)."""
    if ggx is None:
        return None, None, None
    out_g = out_s = out_w = None
    if needs[0] or needs[1]:
        v = ops.fwd(ggx, w, None, IDENTITY)[0]  # F_w(ggx): the adjoint of F_w^T
        out_g = _act_grad(v, s, act) if needs[0] else None
        out_s = _act_grad_saved_vjp(g, s, v, act) if needs[1] else None
    if needs[2]:
        out_w = ops.grad_weight(g, s, ggx, act, False)[0]
    return out_g, out_s, out_w


def grad_weight_backward(ops: BilinearOps, needs, act: Act, g, s, x, ggw, ggb):
    """Gradients (g, s, x) of grad_weight, given dL/d(gw) and dL/d(gb)."""
    out_g = out_s = out_x = None
    if needs[2] and ggw is not None:
        out_x = ops.grad_input(g, s, ggw, act)
    if (needs[0] or needs[1]) and (ggw is not None or ggb is not None):
        if ggw is not None:
            v = ops.fwd(x, ggw, ggb, IDENTITY)[0]
        else:
            v = ops.broadcast_channels(ggb, g)
        out_g = _act_grad(v, s, act) if needs[0] else None
        out_s = _act_grad_saved_vjp(g, s, v, act) if needs[1] else None
    return out_g, out_s, out_x
