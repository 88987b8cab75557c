"""The activation table in Triton: the epilogue y = clamp(act(z) * gain) and the
derivative dy/dz read off the saved tensor (y itself, or z for silu), exactly as
fastgan.reference.activations defines them. Every fused kernel uses these helpers.

Built from exp only: Triton's interpreter has no libdevice (tanh). gain > 0 and
alpha >= 0 are guaranteed by fastgan.functional, which makes sign(y) == sign(z).
alpha, gain and clamp are runtime scalars, so a new value never compiles a new
kernel. An expression of scalars alone (alpha * gain, where(c, 1.0, alpha)) is
evaluated in float32; combined with a tensor first, they take the tensor's dtype:
keep every expression tensor-typed so float64 stays float64.
"""

import triton
import triton.language as tl


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
    if ACT == "relu":
        # where, not maximum: a GPU max returns 0 for a NaN input, torch.relu keeps NaN.
        y = tl.where(z < 0.0, 0.0, z)
    elif ACT == "lrelu":
        y = tl.where(z > 0, z, z * alpha)
    elif ACT == "tanh":
        y = tanh(z)
    elif ACT == "sigmoid":
        y = sigmoid(z)
    elif ACT == "silu":
        y = z * sigmoid(z)
    else:
        y = z
    y = y * gain
    if HAS_CLAMP:
        # NaN stays NaN, as in torch.clamp (a GPU min/max would return the bound).
        y = tl.where(y < -clamp, -clamp, tl.where(y > clamp, clamp, y))
    return y


@triton.jit
def act_derivative(s, ACT: tl.constexpr, alpha, gain, clamp, HAS_CLAMP: tl.constexpr):
    """d y / d z given the saved s: y for every act but silu, z for silu.

    Callers skip it (and the load of s) when act is linear without clamp: then the
    derivative is the constant gain.
    """
    # Tensor-typed constants (see the module note); zeros_like, not s * 0.0, which is
    # NaN where s is +-inf or NaN and would turn those gradients into NaN.
    zero = tl.zeros_like(s)
    if ACT == "silu":
        sig = sigmoid(s)
        d = sig * (1.0 + s * (1.0 - sig)) * gain
    elif ACT == "relu":
        # As torch's relu backward: 0 where y <= 0 (the kink included), gain elsewhere,
        # NaN outputs included.
        d = tl.where(s <= 0, zero, zero + gain)
    elif ACT == "lrelu":
        d = tl.where(s > 0, zero + 1.0, zero + alpha) * gain
    elif ACT == "tanh":
        a = s / gain
        d = (1.0 - a * a) * gain
    elif ACT == "sigmoid":
        a = s / gain
        d = (a - a * a) * gain
    else:
        d = zero + gain
    if HAS_CLAMP:
        if ACT == "silu":
            y = s * sigmoid(s) * gain
        else:
            y = s
        # Multiplied, not selected: as torch's chain rule (reference.activations.clamp_mask).
        d = d * tl.where(tl.abs(y) < clamp, zero + 1.0, zero)
    return d
