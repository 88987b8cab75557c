"""Zero-size tensors behave as in PyTorch on every op and backend: where torch returns
an empty (or bias-only) result, fastgan returns the same values and gradients of the
same shapes; the shapes torch refuses are refused by name (tests/test_errors.py).
Empty problems run the reference whatever the backend (fastgan._backend.resolve):
kernels never see an empty tensor."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastgan
from fastgan import _backend
from fastgan import functional as FG
from fastgan.nn import BatchNormAct1d, BatchNormAct2d

BACKENDS = ["reference", "triton"]


def _leaves(*ts):
    return [None if t is None else t.detach().clone().requires_grad_() for t in ts]


def check_against_torch(fused, plain, inputs, backend):
    """fused(*inputs) on `backend` equals plain(*inputs): values, and the gradients of
    every input for a random upstream gradient (shapes, and values, e.g. a bias's)."""
    ours, theirs = _leaves(*inputs), _leaves(*inputs)
    with fastgan.use_backend(backend):
        y = fused(*ours)
    ref = plain(*theirs)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, equal_nan=True)
    up = torch.randn(ref.shape, dtype=ref.dtype)
    with fastgan.use_backend(backend):
        got = torch.autograd.grad(y, [t for t in ours if t is not None], up, allow_unused=True)
    want = torch.autograd.grad(ref, [t for t in theirs if t is not None], up, allow_unused=True)
    for g, w, t in zip(got, want, [t for t in theirs if t is not None]):
        w = torch.zeros_like(t) if w is None else w
        g = torch.zeros_like(t) if g is None else g
        assert g.shape == t.shape
        torch.testing.assert_close(g, w)


r = torch.randn


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_batch0(backend):
    act = dict(act="lrelu", alpha=0.1, gain=2.0, clamp=1.5)
    check_against_torch(
        lambda x, w, b: FG.conv2d_bias_act(x, w, b, stride=2, padding=1, **act),
        lambda x, w, b: (F.leaky_relu(F.conv2d(x, w, b, 2, 1), 0.1) * 2.0).clamp(-1.5, 1.5),
        [r(0, 3, 6, 6), r(4, 3, 3, 3), r(4)],
        backend,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_transpose2d_batch0(backend):
    check_against_torch(
        lambda x, w, b: FG.conv_transpose2d_bias_act(x, w, b, stride=2, padding=1, output_padding=1, act="silu"),
        lambda x, w, b: F.silu(F.conv_transpose2d(x, w, b, 2, 1, 1)),
        [r(0, 3, 4, 4), r(3, 2, 3, 3), r(2)],
        backend,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "x_shape,w_shape",
    [((0, 3), (4, 3)), ((2, 0, 3), (4, 3)), ((5, 0), (4, 0)), ((5, 3), (0, 3))],
    ids=["rows0", "lead0", "in0", "out0"],
)
def test_linear(backend, x_shape, w_shape):
    check_against_torch(
        lambda x, w, b: FG.linear_bias_act(x, w, b, act="tanh", gain=1.5),
        lambda x, w, b: torch.tanh(F.linear(x, w, b)) * 1.5,
        [r(*x_shape), r(*w_shape), r(w_shape[0])],
        backend,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 5), (0, 3, 4, 4), (2, 3, 0), (2, 3, 0, 4)])
def test_batch_norm(backend, training, shape):
    """As F.batch_norm: an empty result in training as in eval, running statistics
    left as they were (never NaN), zero gradients for weight and bias."""
    rm, rv = torch.randn(3), torch.rand(3) + 0.5
    rm_ours, rv_ours = rm.clone(), rv.clone()
    check_against_torch(
        lambda x, w, b: FG.batch_norm_act(x, rm_ours, rv_ours, w, b, training=training, act="relu"),
        lambda x, w, b: F.relu(F.batch_norm(x, rm, rv, w, b, training)),
        [r(*shape), r(3), r(3)],
        backend,
    )
    assert torch.equal(rm_ours, rm) and torch.equal(rv_ours, rv)


@pytest.mark.parametrize("module_type,shape", [(BatchNormAct1d, (0, 3)), (BatchNormAct1d, (0, 3, 5)),
                                               (BatchNormAct2d, (0, 3, 4, 4))])
def test_batch_norm_modules_on_an_empty_batch(module_type, shape):
    plain_type = nn.BatchNorm1d if module_type is BatchNormAct1d else nn.BatchNorm2d
    plain, fused = plain_type(3), module_type(3, act="relu")
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(*shape)
    assert fused(x).shape == torch.relu(plain(x)).shape == shape
    for a, b in zip(fused.buffers(), plain.buffers()):
        assert torch.equal(a, b)  # num_batches_tracked counted, statistics untouched


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("real_shape,fake_shape", [((0,), (0,)), ((0, 1), (3, 1)), ((0,), (3,)), ((3, 1), (0,))])
def test_losses(backend, reduction, real_shape, fake_shape):
    """The nonsaturating losses are BCE with logits: 'mean' of nothing is NaN, 'sum' 0,
    'none' an empty tensor, as F.binary_cross_entropy_with_logits gives."""
    bce = F.binary_cross_entropy_with_logits

    def torch_d(real, fake):
        rl = bce(real, torch.ones_like(real), reduction=reduction)
        fl = bce(fake, torch.zeros_like(fake), reduction=reduction)
        return torch.cat([rl.flatten(), fl.flatten()]) if reduction == "none" else rl + fl

    def ours_d(real, fake):
        out = FG.discriminator_loss(real, fake, reduction=reduction)
        return torch.cat([out[0].flatten(), out[1].flatten()]) if reduction == "none" else out

    check_against_torch(ours_d, torch_d, [r(*real_shape), r(*fake_shape)], backend)
    check_against_torch(
        lambda f: FG.generator_loss(f, reduction=reduction),
        lambda f: bce(f, torch.ones_like(f), reduction=reduction),
        [r(*real_shape)],
        backend,
    )


def test_mean_of_nothing_is_nan():
    assert math.isnan(FG.generator_loss(torch.randn(0, 1)).item())


def test_empty_problems_resolve_to_the_reference():
    """The rule resolve follows; a 1-D zero-length tensor between 2-D or larger ones is
    the ops' "not computed" stand-in (a saved output an act does not need)."""
    with fastgan.use_backend("triton"):
        assert _backend.resolve(r(0, 3, 4, 4), r(2, 3, 3, 3), r(2)) == "reference"
        assert _backend.resolve(r(2, 0, 4, 4), r(2, 0, 3, 3), None) == "reference"
        assert _backend.resolve(r(0)) == "reference"
        assert _backend.resolve(r(3), r(0)) == "reference"
        assert _backend.resolve(r(4, 3), r(0), r(5, 3)) == "triton"  # grad, stand-in, weight
        assert _backend.resolve(r(4, 3, 2, 2), r(0), r(4, 3, 3, 3)) == "triton"
        assert _backend.resolve(r(3, 1), r(0)) == "reference"  # real logits, empty fake logits
        assert _backend.resolve(r(2, 3), r(4, 3), r(0)) == "reference"  # x, weight, empty bias
