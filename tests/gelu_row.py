"""A test-only activation row: gelu with the tanh approximation,
0.5 z (1 + tanh(c (z + k z^3))), c = sqrt(2 / pi), k = 0.044715, as nn.GELU(approximate="tanh").

Loaded as a pytest plugin (`pytest -p gelu_row`, tests/ on PYTHONPATH) by
tests/test_activation_registry.py, it registers the row and its two formulas before
any test module is collected: the tests that parametrize over the registry then run
gelu on every backend with no other file changed. This file is all that adding an
activation takes (in the package: the row in fastgan/reference/activations.py and
the Triton pair in kernels/activation.py).
"""

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl  # noqa: F401  (Triton needs it in a jit function's globals)
from torch import nn

from fastgan.kernels import activation as KA
from fastgan.reference import activations as A

C = math.sqrt(2 / math.pi)
K = 0.044715


def _derivative(s, alpha, gain):
    """d gelu / d z from z (gelu is not invertible: the row saves z)."""
    t = torch.tanh(C * (s + K * s**3))
    return (0.5 * (1 + t) + 0.5 * s * (1 - t * t) * C * (1 + 3 * K * s * s)) * gain


def _second_derivative(s, alpha, gain):
    # With u = c (s + k s^3) and t = tanh(u): d = (1 + t) / 2 + s (1 - t^2) u' / 2, so
    # d' = (1 - t^2) (u' + s (u'' - 2 t u'^2) / 2).
    t = torch.tanh(C * (s + K * s**3))
    du = C * (1 + 3 * K * s * s)
    return (1 - t * t) * (du + 0.5 * s * (6 * C * K * s - 2 * t * du * du)) * gain


@triton.jit
def gelu_forward(z, alpha):
    # c and k as literals: a Python float combined with a tensor takes its dtype, so a
    # float64 kernel sees them whole.
    u = 0.7978845608028654 * (z + 0.044715 * z * z * z)
    return 0.5 * z * (1.0 + KA.tanh(u))


@triton.jit
def gelu_derivative(s, alpha, gain):
    t = KA.tanh(0.7978845608028654 * (s + 0.044715 * s * s * s))
    du = 0.7978845608028654 * (1.0 + 0.134145 * s * s)
    return (0.5 * (1.0 + t) + 0.5 * s * (1.0 - t * t) * du) * gain


A.register(A.Activation("gelu", lambda z, alpha: F.gelu(z, approximate="tanh"), _derivative, saves="z",
                        second_derivative=_second_derivative, module=nn.GELU, module_kwargs=(("approximate", "tanh"),)))
KA.register("gelu", gelu_forward, gelu_derivative)
