"""The activation table's derivative (fastgan.reference.activations.derivative, read off
the saved output) against torch's own autograd of the plain composition, at the points
where a subgradient convention decides: the kink of relu / lrelu, NaN and infinite
inputs, and the clamp bounds. Then the same through a public op on both backends."""

import math

import pytest
import torch
import torch.nn.functional as F

import fastgan
import fastgan.functional as FG
from fastgan.reference import activations as A
from test_functional import torch_act

EDGES = [-3.0, -1.0, -1e-300, -0.0, 0.0, 1e-300, 1.0, 3.0, math.nan, math.inf, -math.inf]


def torch_derivative(z, act, alpha, gain, clamp):
    """torch's derivative of torch_act, except exactly on a clamp bound, where
    fastgan's is 0 by its documented convention: torch.clamp passes the gradient there,
    but the saved output cannot tell "exactly clamp" from "clamped". (F.hardtanh has
    that convention, but its backward is not even consistent about NaN between its
    vectorised and scalar loops, so it is no oracle.)"""
    z = z.detach().requires_grad_()
    (d,) = torch.autograd.grad(torch_act(z, act, alpha, gain, clamp).sum(), z)
    if clamp is not None:
        on_bound = torch_act(z, act, alpha, gain, None).detach().abs() == clamp
        d = torch.where(on_bound, 0.0, d)
    return d


def _inputs(gain, clamp):
    values = list(EDGES)
    if clamp is not None:
        values += [clamp / gain, -clamp / gain, 2 * clamp / gain, -2 * clamp / gain]
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("act", A.ACTIVATIONS)
@pytest.mark.parametrize("alpha,gain,clamp", [(0.2, 1.0, None), (0.0, 1.0, None), (0.1, 2.0, None), (0.2, 2.0, 1.0)])
def test_derivative_from_saved_output_equals_torch_autograd(act, alpha, gain, clamp):
    z = _inputs(gain, clamp)
    y = A.bias_act(z, act, alpha, gain, clamp)
    d = A.derivative(z if A.needs_preactivation(act) else y, act, alpha, gain, clamp)
    torch.testing.assert_close(y, torch_act(z, act, alpha, gain, clamp), equal_nan=True)
    expected = torch_derivative(z, act, alpha, gain, clamp)
    torch.testing.assert_close(d, expected, equal_nan=True, msg=lambda m: f"{act} derivative: {m}")


def test_torch_conventions_the_table_follows():
    """The conventions themselves, so a change in torch shows up here first: relu's
    subgradient is 0 at 0 and 1 at NaN; leaky_relu's is the slope at 0 and at NaN."""
    z = torch.tensor([0.0, -0.0, math.nan], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(F.relu(z).sum(), z)
    assert g.tolist() == [0.0, 0.0, 1.0]
    (g,) = torch.autograd.grad(F.leaky_relu(z, 0.25).sum(), z)
    assert g.tolist() == [0.25, 0.25, 0.25]
    # torch.clamp passes the gradient at the bound (fastgan does not, see
    # torch_derivative) and drops it at NaN (as fastgan).
    c = torch.tensor([1.0, -1.0, math.nan], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.grad(c.clamp(-1, 1).sum(), c)[0].tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("backend", ["reference", "triton"])
@pytest.mark.parametrize("act,alpha", [("relu", None), ("lrelu", 0.2), ("lrelu", 0.0), ("tanh", None)])
def test_public_op_gradient_at_kink_and_nan_equals_torch(backend, act, alpha):
    """The issue's case: relu's OpInfo inputs hold NaN and inf, where the old derivative
    (y > 0) dropped the gradient torch passes. Through linear_bias_act with a 1x1
    identity weight, float32 (the interpreter's dtype), both backends."""
    x = torch.tensor([-2.0, -0.0, 0.0, 0.75, math.nan, math.inf, -math.inf, 2.0])
    g = torch.linspace(-1.5, 2.0, x.numel())
    plain = torch_act(x, act, 0.2 if alpha is None else alpha, 1.0, None)
    expected = torch_derivative(x, act, 0.2 if alpha is None else alpha, 1.0, None) * g
    xf = x.detach().clone().requires_grad_()
    with fastgan.use_backend(backend):
        y = FG.linear_bias_act(xf[:, None], torch.ones(1, 1), act=act, alpha=alpha)[:, 0]
        (got,) = torch.autograd.grad(y, xf, g)
    torch.testing.assert_close(y.detach(), plain, equal_nan=True)
    torch.testing.assert_close(got, expected, equal_nan=True)
