"""The activations in Triton: the epilogue y = clamp(act(z) * gain) and the derivative
dy/dz read off the saved tensor, exactly as the rows of fastgan.reference.activations
define them. Every fused kernel uses apply_act and act_derivative, with the activation
a tl.constexpr name chosen from the registry: each row's two Triton formulas are
registered here under its name (register), and its `saves` says what s is.

Built from exp only: Triton's interpreter has no libdevice (tanh). gain > 0 and
alpha >= 0 are guaranteed by fastgan.functional, which makes sign(y) == sign(z).
alpha, gain and clamp are runtime scalars, so a new value never compiles a new
kernel. An expression of scalars alone (alpha * gain, where(c, 1.0, alpha)) is
evaluated in float32; combined with a tensor first, they take the tensor's dtype:
keep every expression tensor-typed so float64 stays float64.
"""

import hashlib

import triton
import triton.language as tl

from fastgan.reference import activations as A


class _FormulaTable(dict):
    def __missing__(self, act):
        raise ValueError(f"act {act!r} has no Triton formulas (fastgan.kernels.activation.register)")


class _Formulas:
    """{act: (forward(z, alpha), derivative(s, alpha, gain))}: the Triton formulas of
    each registered row. Read inside constexpr_functions, which Triton walks like
    kernels: they may index a dict reached through a class, but neither call a plain
    function nor read a module global that later changes (a row may be registered
    after a kernel compiled)."""

    by_name = _FormulaTable()


def register(act: str, forward, derivative) -> None:
    """The Triton formulas of the registry row `act` (both @triton.jit): forward(z,
    alpha) = act(z) before gain and clamp, derivative(s, alpha, gain) = d y / d z with
    the gain, from the saved tensor s the row names."""
    A.lookup(act)
    if act in _Formulas.by_name:
        raise ValueError(f"the Triton formulas of {act!r} are already registered")
    _Formulas.by_name[act] = (forward, derivative)


@triton.constexpr_function
def forward_of(act):
    return _Formulas.by_name[act][0]


@triton.constexpr_function
def derivative_of(act):
    return _Formulas.by_name[act][1]


@triton.constexpr_function
def saves_preactivation(act):
    """True if the saved tensor of `act` is z (its derivative needs z), not y."""
    return A.REGISTRY[act].saves == "z"


@triton.constexpr_function
def saves_nothing(act):
    """True if the derivative of `act` is the constant gain: nothing is saved."""
    return A.REGISTRY[act].saves is None


@triton.jit
def sigmoid(z):
    # exp(-z) overflows to inf for very negative z, and 1 / inf is the right 0.
    return 1.0 / (1.0 + tl.exp(-z))


@triton.jit
def tanh(z):
    # tanh(|z|) = (1 - e) / (1 + e) with e = exp(-2|z|) <= 1: never overflows.
    e = tl.exp(-2.0 * tl.abs(z))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(z < 0, -t, t)


@triton.jit
def apply_act(z, ACT: tl.constexpr, alpha, gain, clamp, HAS_CLAMP: tl.constexpr):
    """clamp(act(z) * gain, -clamp, clamp), computed in z's dtype (float32 or float64)."""
    formulas_key: tl.constexpr = FORMULAS_KEY  # noqa: F841  (in the cache key: see below)
    forward: tl.constexpr = forward_of(ACT)
    y = forward(z, alpha)
    y = y * gain
    if HAS_CLAMP:
        # NaN stays NaN, as in torch.clamp (a GPU min/max would return the bound).
        y = tl.where(y < -clamp, -clamp, tl.where(y > clamp, clamp, y))
    return y


@triton.jit
def act_derivative(s, ACT: tl.constexpr, alpha, gain, clamp, HAS_CLAMP: tl.constexpr):
    """d y / d z given the saved s: z for an act that saves z, else y.

    Callers skip it (and the load of s) when act is linear without clamp: then the
    derivative is the constant gain.
    """
    formulas_key: tl.constexpr = FORMULAS_KEY  # noqa: F841
    derivative: tl.constexpr = derivative_of(ACT)
    d = derivative(s, alpha, gain)
    if HAS_CLAMP:
        if saves_preactivation(ACT):
            forward: tl.constexpr = forward_of(ACT)
            y = forward(s, alpha) * gain
        else:
            y = s
        # Multiplied, not selected: as torch's chain rule (reference.activations.clamp_mask).
        zero = tl.zeros_like(s)
        d = d * tl.where(tl.abs(y) < clamp, zero + 1.0, zero)
    return d


# ----------------------------------------------------------------------------- the formulas
# Tensor-typed constants (see the module note): zeros_like, not s * 0.0, which is NaN
# where s is +-inf or NaN and would turn those gradients into NaN.


@triton.jit
def linear_forward(z, alpha):
    return z


@triton.jit
def linear_derivative(s, alpha, gain):
    return tl.zeros_like(s) + gain


@triton.jit
def relu_forward(z, alpha):
    # where, not maximum: a GPU max returns 0 for a NaN input, torch.relu keeps NaN.
    return tl.where(z < 0.0, 0.0, z)


@triton.jit
def relu_derivative(s, alpha, gain):
    # As torch's relu backward: 0 where y <= 0 (the kink included), gain elsewhere,
    # NaN outputs included.
    zero = tl.zeros_like(s)
    return tl.where(s <= 0, zero, zero + gain)


@triton.jit
def lrelu_forward(z, alpha):
    return tl.where(z > 0, z, z * alpha)


@triton.jit
def lrelu_derivative(s, alpha, gain):
    zero = tl.zeros_like(s)
    return tl.where(s > 0, zero + 1.0, zero + alpha) * gain


@triton.jit
def tanh_forward(z, alpha):
    return tanh(z)


@triton.jit
def tanh_derivative(s, alpha, gain):
    a = s / gain
    return (1.0 - a * a) * gain


@triton.jit
def sigmoid_forward(z, alpha):
    return sigmoid(z)


@triton.jit
def sigmoid_derivative(s, alpha, gain):
    a = s / gain
    return (a - a * a) * gain


@triton.jit
def silu_forward(z, alpha):
    return z * sigmoid(z)


@triton.jit
def silu_derivative(s, alpha, gain):
    sig = sigmoid(s)
    return sig * (1.0 + s * (1.0 - sig)) * gain


register("linear", linear_forward, linear_derivative)
register("relu", relu_forward, relu_derivative)
register("lrelu", lrelu_forward, lrelu_derivative)
register("tanh", tanh_forward, tanh_derivative)
register("sigmoid", sigmoid_forward, sigmoid_derivative)
register("silu", silu_forward, silu_derivative)


def _formulas_key() -> str:
    """A digest of the formulas registered by now (the built-in rows'). apply_act and
    act_derivative reach the formulas through a constexpr_function, which Triton does
    not hash: this constant, read by both, puts the formulas' source into every
    kernel's cache key, so an edited formula never runs a stale cached binary. (A row
    registered later, a test's say, is keyed by its name alone.)"""
    digest = hashlib.sha256()
    for name, pair in sorted(_Formulas.by_name.items()):
        for fn in pair:
            key = getattr(fn, "cache_key", None)  # compiled mode; the interpreter caches nothing
            digest.update(f"{name}:{fn.__name__}:{key}".encode())
    return digest.hexdigest()


FORMULAS_KEY = tl.constexpr(_formulas_key())
