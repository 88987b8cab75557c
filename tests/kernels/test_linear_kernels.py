"""The Triton linear kernels (fastgan.kernels.linear) through fastgan.functional with
backend 'triton' on the interpreter, against the float64 composition of
torch.nn.functional: forward and the gradients of input, weight and bias; float32
(ieee dot) and float16; feature counts below tl.dot's K = 16 included."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch.autograd import gradgradcheck

import fastgan
from fastgan import functional as FG
from kernel_cases import EXAMPLES, forced_tiles, tile_choices
from strategies import activation, seeds
from test_functional import check_against_torch, torch_act
from utils import Rand, leaf

features = st.one_of(st.sampled_from([1, 3]), st.integers(1, 40))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@settings(max_examples=EXAMPLES)
@given(
    lead=st.lists(st.integers(1, 5), min_size=0, max_size=2),
    k=features,
    n=features,
    bias=st.booleans(),
    act=activation(),
    seed=seeds,
    tiles=tile_choices,
)
def test_linear_kernels_match_reference(dtype, lead, k, n, bias, act, seed, tiles):
    rand = Rand(seed)
    x = leaf(rand(*lead, k, dtype=dtype))
    w = leaf(rand(n, k, dtype=dtype, scale=k**-0.5))
    b = leaf(rand(n, dtype=dtype)) if bias else None
    with fastgan.use_backend("triton"), forced_tiles(tiles):
        y = check_against_torch(
            lambda x, w, b: FG.linear_bias_act(x, w, b, **act),
            lambda x, w, b: torch_act(F.linear(x, w, b), **act),
            lambda x, w, b: F.linear(x, w, b),
            act,
            [x, w, b],
            dtype,
            rand,
        )
    assert y.shape == (*lead, n)


def test_linear_reads_transposed_operands_through_strides():
    """A transposed (non-contiguous) x and weight give the same result as contiguous
    copies: the kernels index through strides instead of assuming row-major."""
    rand = Rand(11)
    x = rand(19, 6).t()  # [6, 19], strides (1, 6)
    w = rand(19, 5).t()  # [5, 19]
    with fastgan.use_backend("triton"):
        y = FG.linear_bias_act(x, w, None, act="tanh")
        y_contig = FG.linear_bias_act(x.contiguous(), w.contiguous(), None, act="tanh")
    assert torch.equal(y, y_contig)
    ref = torch.tanh(F.linear(x.double(), w.double()))
    assert (y.double() - ref).norm() / ref.norm() < 1e-5


@pytest.mark.parametrize("act,clamp", [("silu", 2.0), ("tanh", None)])
def test_linear_gradgradcheck_through_kernels(act, clamp):
    """Second order through the linear kernels, float64 (fast_mode: a random projection
    of the Jacobian)."""
    gen = torch.Generator().manual_seed(2)

    def r(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()

    x, w, b = r(4, 6), r(3, 6), r(3)
    with fastgan.use_backend("triton"):
        assert gradgradcheck(lambda x, w, b: FG.linear_bias_act(x, w, b, act=act, clamp=clamp, gain=1.2),
                             (x, w, b), fast_mode=True)
