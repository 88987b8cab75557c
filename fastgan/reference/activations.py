"""The activation table: y = clamp(act(z) * gain, -clamp, clamp) and its derivatives.

Every fused op ends with this epilogue. The backward computes the activation's
derivative from the saved *output* y (relu, lrelu, tanh, sigmoid, linear), so the
pre-activation never has to be stored; silu is not invertible and saves z instead.
All functions here are plain differentiable PyTorch, so they serve as the oracle, as
the CPU path and as the second-order formulas of the fused ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ACTIVATIONS = ("linear", "relu", "lrelu", "tanh", "sigmoid", "silu")
DEFAULT_ALPHA = 0.2


def needs_preactivation(act: str) -> bool:
    """True if the derivative of `act` cannot be computed from its output."""
    return act == "silu"


def needs_saved(act: str, clamp: float | None) -> bool:
    """False if the derivative is the constant `gain` (no tensor has to be kept)."""
    return act != "linear" or clamp is not None


def clamp_as_saved(clamp: float | None, act: str, dtype: torch.dtype) -> float | None:
    """The clamp bound to compare a saved tensor of `dtype` with, in a backward.

    A clamped output is stored as the clamp rounded to its dtype (0.8 -> 0.7998 in
    float16); the mask |y| < clamp must compare with that rounded value, or a backward
    that upcasts the saved y first lets gradient through clamped elements. silu saves z
    and recomputes y in the compute dtype, so its bound stays exact.
    """
    if clamp is None or needs_preactivation(act):
        return clamp
    return float(torch.tensor(clamp, dtype=dtype))


def activation(z: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    if act == "linear":
        return z
    if act == "relu":
        return F.relu(z)
    if act == "lrelu":
        return F.leaky_relu(z, alpha)
    if act == "tanh":
        return torch.tanh(z)
    if act == "sigmoid":
        return torch.sigmoid(z)
    if act == "silu":
        return F.silu(z)
    raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")


def bias_act(
    z: torch.Tensor, act: str, alpha: float, gain: float, clamp: float | None
) -> torch.Tensor:
    """clamp(act(z) * gain); z already holds the bias."""
    y = activation(z, act, alpha)
    if gain != 1.0:
        y = y * gain
    if clamp is not None:
        y = y.clamp(-clamp, clamp)
    return y


def _output_of(s: torch.Tensor, act: str, alpha: float, gain: float, clamp) -> torch.Tensor:
    """The (clamped) output y, given the saved tensor s (y itself, or z for silu)."""
    if needs_preactivation(act):
        return bias_act(s, act, alpha, gain, clamp)
    return s


def derivative(s: torch.Tensor, act: str, alpha: float, gain: float, clamp) -> torch.Tensor:
    """d y / d z as a tensor, from the saved tensor s (y, or z for silu).

    gain must be positive and alpha non-negative (the public API checks this), which
    makes the sign of y the sign of z.
    """
    if act == "silu":
        sig = torch.sigmoid(s)
        d = sig * (1 + s * (1 - sig))
    elif act == "linear":
        d = torch.ones_like(s)
    else:
        a = s / gain
        if act == "relu":
            # torch's relu backward zeroes where y <= 0 and passes everything else: 0 at
            # the kink, 1 where y is NaN (a NaN input; `s > 0` would drop that gradient).
            d = torch.where(s <= 0, s.new_zeros(()), s.new_ones(()))
        elif act == "lrelu":
            # torch's leaky_relu backward: 1 where x > 0, alpha elsewhere (the kink and
            # NaN included). sign(y) == sign(z), so testing y is testing z.
            # Scalars as tensors of s's dtype: a Python-scalar where() rounds alpha to float32.
            d = torch.where(s > 0, s.new_ones(()), s.new_full((), alpha))
        elif act == "tanh":
            d = 1 - a * a
        elif act == "sigmoid":
            d = a * (1 - a)
        else:
            raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")
    d = d * gain
    if clamp is not None:
        d = d * clamp_mask(_output_of(s, act, alpha, gain, clamp), clamp)
    return d


def clamp_mask(y: torch.Tensor, clamp: float) -> torch.Tensor:
    """1 where the output y is strictly inside (-clamp, clamp), else 0, in y's dtype.

    Applied by multiplying, as torch's chain rule does, so a NaN derivative (tanh at a
    NaN input) stays NaN, and a NaN output gets 0 times the act's derivative, as from
    torch.clamp. On the bound itself the mask is 0: torch.clamp's own backward passes
    the gradient at exactly +-clamp, but y cannot tell "exactly clamp" from "clamped".
    """
    return (y.abs() < clamp).to(y.dtype)


def act_grad(
    grad: torch.Tensor, s: torch.Tensor, act: str, alpha: float, gain: float, clamp
) -> torch.Tensor:
    """Gradient with respect to the pre-activation z, given dL/dy and the saved s.

    s may be an empty tensor when `needs_saved(act, clamp)` is False.
    """
    if not needs_saved(act, clamp):
        return grad * gain if gain != 1.0 else grad
    return grad * derivative(s, act, alpha, gain, clamp).to(grad.dtype)


def act_grad_saved_vjp(
    grad: torch.Tensor,
    s: torch.Tensor,
    grad_of_gz: torch.Tensor,
    act: str,
    alpha: float,
    gain: float,
    clamp,
) -> torch.Tensor | None:
    """Vector-Jacobian product of act_grad(grad, s) with respect to s.

    gz = grad * d(s), so d<v, gz>/ds = v * grad * d'(s). It vanishes for the piecewise
    linear activations (None is returned); the clamp mask is piecewise constant.
    """
    if act in ("linear", "relu", "lrelu"):
        return None
    if act == "silu":
        sig = torch.sigmoid(s)
        dd = sig * (1 - sig) * (2 + s * (1 - 2 * sig))
    else:
        a = s / gain
        if act == "tanh":  # d = gain * (1 - a^2), a = s / gain
            dd = -2 * a
        else:  # sigmoid: d = gain * (a - a^2)
            dd = 1 - 2 * a
    if act == "silu":
        dd = dd * gain
    if clamp is not None:
        dd = dd * clamp_mask(_output_of(s, act, alpha, gain, clamp), clamp)
    return grad_of_gz * grad * dd
