"""The activation registry: one row per activation, read by every backend.

Every fused op ends with the epilogue y = clamp(act(z) * gain, -clamp, clamp). A row
(Activation) says what each backend needs to know about `act`:
  - its name, default alpha and gain, and whether alpha means anything to it;
  - which saved tensor its derivative is read from (`saves`): "y", the output, so the
    pre-activation never has to be stored (relu, lrelu, tanh, sigmoid); "z", the
    pre-activation, for an activation that is not invertible (silu); None when the
    derivative is the constant gain (linear);
  - whether it has a second derivative (None: piecewise linear, so a double backward
    gets nothing through the derivative);
  - the PyTorch module it stands for (fastgan.nn.fuse() replaces it; the tests' oracle
    builds it);
  - its reference formulas, plain differentiable PyTorch: the oracle, the CPU path and
    the second-order formulas of the fused ops.
Its Triton formulas are registered under the same name in fastgan.kernels.activation;
fastgan.functional validates `act` against the rows, the fused batch norm and the
conv / linear kernels read `saves` (docs/adding-an-op.md, "Adding an activation").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_ALPHA = 0.2
SAVED_KINDS = ("y", "z", None)


@dataclass(frozen=True)
class Activation:
    """One row of the registry. The formulas take the pre-activation z or the saved
    tensor s (see `saves`) and the resolved alpha and gain; gain > 0 and alpha >= 0
    (fastgan.functional checks both), which makes sign(y) == sign(z)."""

    name: str
    forward: Callable[[torch.Tensor, float], torch.Tensor]  # act(z, alpha), before gain and clamp
    # d y / d z (gain included, clamp not) from the saved tensor s, alpha and gain.
    derivative: Callable[[torch.Tensor, float, float], torch.Tensor]
    saves: str | None  # "y", "z" or None (see the module docstring)
    # d derivative / d s (s, alpha, gain): the second-order term; None when it is 0.
    second_derivative: Callable[[torch.Tensor, float, float], torch.Tensor] | None = None
    default_alpha: float = DEFAULT_ALPHA
    uses_alpha: bool = False
    default_gain: float = 1.0
    module: type[nn.Module] | None = None  # the torch.nn module it replaces (None: nothing to replace)
    module_alpha: str | None = None  # that module's attribute (and constructor argument) holding alpha
    # (argument, value) pairs the module is built with, and must have to be replaced.
    module_kwargs: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        if self.saves not in SAVED_KINDS:
            raise ValueError(f"saves must be one of {SAVED_KINDS}, got {self.saves!r}")

    @property
    def has_second_derivative(self) -> bool:
        return self.second_derivative is not None

    def torch_module(self, alpha: float | None = None) -> nn.Module:
        """PyTorch's own module for act (nn.Identity for linear)."""
        if self.module is None:
            return nn.Identity()
        kwargs = dict(self.module_kwargs)
        if self.module_alpha is not None:
            kwargs[self.module_alpha] = self.default_alpha if alpha is None else alpha
        return self.module(**kwargs)

    def replaces(self, module) -> bool:
        """True if `module` is the torch.nn module of this row, built with its arguments."""
        return (self.module is not None and type(module) is self.module
                and all(getattr(module, k, None) == v for k, v in self.module_kwargs))

    def alpha_of(self, module: nn.Module) -> float | None:
        """alpha of a module this row replaces (None when the row has no alpha)."""
        return None if self.module_alpha is None else float(getattr(module, self.module_alpha))


class _Names(Sequence):
    """The registered names, in registration order; always current (a row registered
    later is in it), and shown like the tuple it stands for."""

    def __getitem__(self, i):
        return tuple(REGISTRY)[i]

    def __len__(self):
        return len(REGISTRY)

    def __contains__(self, name):
        return isinstance(name, str) and name in REGISTRY

    def __repr__(self):
        return repr(tuple(REGISTRY))


# {name: row}; add rows with register().
REGISTRY: dict[str, Activation] = {}
ACTIVATIONS = _Names()


def register(row: Activation) -> Activation:
    """Add a row. Its Triton formulas are registered separately, under the same name,
    with fastgan.kernels.activation.register."""
    if row.name in REGISTRY:
        raise ValueError(f"activation {row.name!r} is already registered")
    REGISTRY[row.name] = row
    return row


def lookup(act: str) -> Activation:
    """The row of `act`; ValueError naming the registered ones otherwise."""
    try:
        return REGISTRY[act]
    except (KeyError, TypeError):
        raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}") from None


def rows() -> tuple[Activation, ...]:
    return tuple(REGISTRY.values())


# ----------------------------------------------------------------------------- the rows


def _ones(s: torch.Tensor, gain: float) -> torch.Tensor:
    return torch.ones_like(s) * gain


def _relu_derivative(s, alpha, gain):
    # torch's relu backward zeroes where y <= 0 and passes everything else: 0 at the
    # kink, 1 where y is NaN (a NaN input; `s > 0` would drop that gradient).
    return torch.where(s <= 0, s.new_zeros(()), s.new_ones(())) * gain


def _lrelu_derivative(s, alpha, gain):
    # torch's leaky_relu backward: 1 where x > 0, alpha elsewhere (the kink and NaN
    # included). sign(y) == sign(z), so testing y is testing z.
    # Scalars as tensors of s's dtype: a Python-scalar where() rounds alpha to float32.
    return torch.where(s > 0, s.new_ones(()), s.new_full((), alpha)) * gain


def _tanh_derivative(s, alpha, gain):
    a = s / gain
    return (1 - a * a) * gain


def _tanh_second_derivative(s, alpha, gain):  # d = gain * (1 - a^2), a = s / gain
    return -2 * (s / gain)


def _sigmoid_derivative(s, alpha, gain):
    a = s / gain
    return a * (1 - a) * gain


def _sigmoid_second_derivative(s, alpha, gain):  # d = gain * (a - a^2)
    return 1 - 2 * (s / gain)


def _silu_derivative(s, alpha, gain):
    sig = torch.sigmoid(s)
    return sig * (1 + s * (1 - sig)) * gain


def _silu_second_derivative(s, alpha, gain):
    sig = torch.sigmoid(s)
    return sig * (1 - sig) * (2 + s * (1 - 2 * sig)) * gain


register(Activation("linear", lambda z, alpha: z, lambda s, alpha, gain: _ones(s, gain), saves=None))
register(Activation("relu", lambda z, alpha: F.relu(z), _relu_derivative, saves="y", module=nn.ReLU))
register(Activation("lrelu", lambda z, alpha: F.leaky_relu(z, alpha), _lrelu_derivative, saves="y", uses_alpha=True,
                    module=nn.LeakyReLU, module_alpha="negative_slope"))
register(Activation("tanh", lambda z, alpha: torch.tanh(z), _tanh_derivative, saves="y",
                    second_derivative=_tanh_second_derivative, module=nn.Tanh))
register(Activation("sigmoid", lambda z, alpha: torch.sigmoid(z), _sigmoid_derivative, saves="y",
                    second_derivative=_sigmoid_second_derivative, module=nn.Sigmoid))
register(Activation("silu", lambda z, alpha: F.silu(z), _silu_derivative, saves="z",
                    second_derivative=_silu_second_derivative, module=nn.SiLU))


# ----------------------------------------------------------------------------- the epilogue


def needs_preactivation(act: str) -> bool:
    """True if the derivative of `act` cannot be computed from its output."""
    return lookup(act).saves == "z"


def needs_saved(act: str, clamp: float | None) -> bool:
    """False if the derivative is the constant `gain` (no tensor has to be kept)."""
    return lookup(act).saves is not None or clamp is not None


def clamp_as_saved(clamp: float | None, act: str, dtype: torch.dtype) -> float | None:
    """The clamp bound to compare a saved tensor of `dtype` with, in a backward.

    A clamped output is stored as the clamp rounded to its dtype (0.8 -> 0.7998 in
    float16); the mask |y| < clamp must compare with that rounded value, or a backward
    that upcasts the saved y first lets gradient through clamped elements. An act that saves z
    recomputes y in the compute dtype, so its bound stays exact.
    """
    if clamp is None or needs_preactivation(act):
        return clamp
    return float(torch.tensor(clamp, dtype=dtype))


def activation(z: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    return lookup(act).forward(z, alpha)


def bias_act(
    z: torch.Tensor, act: str, alpha: float | None, gain: float | None, clamp: float | None
) -> torch.Tensor:
    """clamp(act(z) * gain); z already holds the bias. alpha or gain None: the row's default."""
    row = lookup(act)
    y = row.forward(z, row.default_alpha if alpha is None else alpha)
    gain = row.default_gain if gain is None else gain
    if gain != 1.0:
        y = y * gain
    if clamp is not None:
        y = y.clamp(-clamp, clamp)
    return y


def _output_of(s: torch.Tensor, act: str, alpha: float, gain: float, clamp) -> torch.Tensor:
    """The (clamped) output y, given the saved tensor s (y itself, or z)."""
    if needs_preactivation(act):
        return bias_act(s, act, alpha, gain, clamp)
    return s


def derivative(s: torch.Tensor, act: str, alpha: float, gain: float, clamp) -> torch.Tensor:
    """d y / d z as a tensor, from the saved tensor s (y, or z for an act that saves z)."""
    d = lookup(act).derivative(s, alpha, gain)
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
    row = lookup(act)
    if not row.has_second_derivative:
        return None
    dd = row.second_derivative(s, alpha, gain)
    if clamp is not None:
        dd = dd * clamp_mask(_output_of(s, act, alpha, gain, clamp), clamp)
    return grad_of_gz * grad * dd
