"""Second-order gradients (R1, WGAN-GP) through the fused ops: gradgradcheck in float64,
and an R1 penalty whose parameter gradient matches plain PyTorch."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from fastgan import functional as FG
from fastgan.reference.activations import ACTIVATIONS

D64 = dict(dtype=torch.float64)


def rand(*shape, scale=1.0):
    return (torch.randn(*shape, **D64) * scale).requires_grad_()


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("transposed", [False, True])
def test_conv_family_gradgradcheck(act, transposed):
    torch.manual_seed(1)
    x = rand(2, 3, 5, 4)
    w = rand(*((3, 2) if transposed else (2, 3)), 3, 2, scale=0.5)
    b = rand(2)
    if transposed:
        def f(x, w, b):
            return FG.conv_transpose2d_bias_act(x, w, b, stride=2, padding=1, output_padding=1, act=act, gain=1.3)
    else:
        def f(x, w, b):
            return FG.conv2d_bias_act(x, w, b, stride=2, padding=1, act=act, gain=1.3)
    assert gradcheck(f, (x, w, b))
    assert gradgradcheck(f, (x, w, b))


@pytest.mark.parametrize("act", ["lrelu", "tanh", "silu"])
def test_linear_gradgradcheck(act):
    torch.manual_seed(2)
    x, w, b = rand(4, 6), rand(3, 6), rand(3)
    assert gradgradcheck(lambda x, w, b: FG.linear_bias_act(x, w, b, act=act, clamp=2.0), (x, w, b))


@pytest.mark.parametrize("act", ["relu", "sigmoid", "silu"])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradgradcheck(act, training):
    torch.manual_seed(3)
    x, w, b = rand(3, 2, 3, 3, scale=2.0), rand(2), rand(2)
    rm, rv = torch.randn(2, **D64), torch.rand(2, **D64) + 0.5

    def f(x, w, b):
        return FG.batch_norm_act(x, rm.clone(), rv.clone(), w, b, training=training, act=act)

    assert gradgradcheck(f, (x, w, b))


def test_r1_penalty_matches_plain_pytorch():
    """The R1 regulariser of a small conv discriminator: d/dtheta ||d D(x)/dx||^2."""
    torch.manual_seed(4)
    w1, b1, w2 = torch.randn(4, 3, 3, 3, **D64) * 0.3, torch.randn(4, **D64), torch.randn(1, 4, 4, 4, **D64) * 0.3
    x = torch.randn(2, 3, 8, 8, **D64)

    def penalty(fused):
        params = [t.clone().requires_grad_() for t in (w1, b1, w2)]
        xr = x.clone().requires_grad_()
        if fused:
            h = FG.conv2d_bias_act(xr, params[0], params[1], stride=2, padding=1, act="lrelu")
            logits = FG.conv2d_bias_act(h, params[2], None)
            loss = FG.discriminator_loss(logits, logits.detach() * 0, "nonsaturating")
        else:
            h = F.leaky_relu(F.conv2d(xr, params[0], params[1], 2, 1), 0.2)
            logits = F.conv2d(h, params[2])
            loss = F.softplus(-logits).mean() + F.softplus(logits.detach() * 0).mean()
        (gx,) = torch.autograd.grad(loss, xr, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), params)

    for got, want in zip(penalty(True), penalty(False)):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)
