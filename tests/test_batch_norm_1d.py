"""Batch norm takes what nn.BatchNorm1d takes: [N, C] and [N, C, L] (besides
nn.BatchNorm2d's [N, C, H, W]), in fastgan.functional.batch_norm_act on both backends
and in the fused module BatchNormAct1d, against F.batch_norm / nn.BatchNorm1d."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastgan
from fastgan import functional as FG
from fastgan.nn import BatchNormAct1d

torch_acts = {"relu": F.relu, "lrelu": lambda t: F.leaky_relu(t, 0.2), "silu": F.silu}


@pytest.mark.parametrize("backend", ["reference", "triton"])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (1, 3, 2)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("act", ["relu", "silu"])
def test_functional_matches_f_batch_norm(backend, shape, training, act):
    dtype = torch.float32 if backend == "triton" else torch.float64  # the interpreter: float32
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(shape, generator=gen, dtype=dtype) * 2 + 1).requires_grad_()
    w = torch.randn(3, generator=gen, dtype=dtype).requires_grad_()
    b = torch.randn(3, generator=gen, dtype=dtype).requires_grad_()
    rm, rv = torch.randn(3, generator=gen, dtype=dtype), torch.rand(3, generator=gen, dtype=dtype) + 0.5
    rm_ours, rv_ours = rm.clone(), rv.clone()
    with fastgan.use_backend(backend):
        y = FG.batch_norm_act(x, rm_ours, rv_ours, w, b, training=training, momentum=0.3, act=act)
    ref = torch_acts[act](F.batch_norm(x, rm, rv, w, b, training, 0.3))
    assert y.shape == shape
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y, ref, **tol)
    torch.testing.assert_close(rm_ours, rm, **tol)
    torch.testing.assert_close(rv_ours, rv, **tol)
    up = torch.randn(shape, generator=gen, dtype=dtype)
    with fastgan.use_backend(backend):
        got = torch.autograd.grad(y, [x, w, b], up)
    want = torch.autograd.grad(ref, [x, w, b], up)
    for g, t in zip(got, want):
        torch.testing.assert_close(g, t, **tol)


@pytest.mark.parametrize("shape", [(8, 4), (5, 4, 3)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_module_matches_nn_batchnorm1d(shape, momentum):
    torch.manual_seed(0)
    plain = nn.BatchNorm1d(4, momentum=momentum).double()
    fused = BatchNormAct1d(4, momentum=momentum, act="lrelu", alpha=0.2).double()
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5), plain.bias.uniform_(-0.5, 0.5)
    fused.load_state_dict(plain.state_dict())
    for _ in range(2):  # momentum=None averages over the steps taken
        x = torch.randn(shape, dtype=torch.float64) * 3 - 1
        torch.testing.assert_close(fused(x), F.leaky_relu(plain(x), 0.2))
    for a, b in zip(fused.state_dict().values(), plain.state_dict().values()):
        torch.testing.assert_close(a, b)
    plain.eval(), fused.eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(fused(x), F.leaky_relu(plain(x), 0.2))


def test_module_refuses_what_batchnorm1d_refuses():
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        BatchNormAct1d(3)(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="more than 1"):
        BatchNormAct1d(3)(torch.randn(1, 3))
