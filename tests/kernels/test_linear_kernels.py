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
from utils import Rand, assert_close, leaf

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


def _launch_args(launch) -> dict:
    """{parameter name: value} of a recorded _gemm_kernel launch, constexprs included."""
    return {**dict(zip(launch.kernel.arg_names, launch.args)), **launch.kwargs}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_linear_layouts_of_small_and_unaligned_reductions(dtype):
    """The three layouts the linear launcher picks, each against the float64 reference
    (forward, input, weight and bias gradients): a reduction of at most 16 terms runs as
    outer products without tl.dot (RANK_K); one that neither operand can load 16-byte
    aligned (40 features) reads zero-padded K-contiguous copies (K 40 -> 48); one with an
    aligned operand (the weight gradient's dL/dy^T over 32 outputs) reads both in place."""
    from fastgan.bench.launches import recording_launches
    from fastgan.kernels import linear as KL
    from fastgan.reference import linear as RL

    rand = Rand(21)
    act = ("lrelu", 0.2, 1.0, None)
    x2, w2, b2 = rand(24, 2, dtype=dtype), rand(20, 2, dtype=dtype), rand(20, dtype=dtype)
    x40, w40, b40 = rand(24, 40, dtype=dtype), rand(32, 40, dtype=dtype, scale=40**-0.5), rand(32, dtype=dtype)
    with fastgan.use_backend("triton"), recording_launches() as launches:
        y2, _ = KL.linear_fwd(x2, w2, b2, *act)
        y40, _ = KL.linear_fwd(x40, w40, b40, *act)
        grad = rand(24, 32, dtype=dtype)
        gx = KL.linear_grad_input(grad, y40, w40, *act)
        gw, gb = KL.linear_grad_weight(grad, y40, x40, *act, True)
    rank2, padded, grad_input, grad_weight = (_launch_args(launch) for launch in launches)

    assert rank2["RANK_K"] == 2 and rank2["K"] == 2
    assert padded["RANK_K"] == 0 and padded["K"] == 48 and (padded["sa_m"], padded["sb_n"]) == (48, 48)
    a, b = padded["a_ptr"], padded["b_ptr"]
    assert a.shape == (24, 48) and b.shape == (32, 48)
    assert torch.equal(a[:, :40], x40) and torch.equal(b[:, :40], w40) and not a[:, 40:].any() and not b[:, 40:].any()
    # dL/dx reduces over the 32 outputs (aligned); dL/dw's dL/dy^T is contiguous along 32 outputs.
    assert grad_input["K"] == 32 and grad_input["a_ptr"] is grad
    assert grad_weight["K"] == 24 and grad_weight["RANK_K"] == 0
    assert grad_weight["a_ptr"] is grad and grad_weight["b_ptr"] is x40

    d = torch.float64
    assert_close(y2, RL.linear_fwd(x2.to(d), w2.to(d), b2.to(d), *act)[0], dtype, "rank-2 forward")
    assert_close(y40, RL.linear_fwd(x40.to(d), w40.to(d), b40.to(d), *act)[0], dtype, "padded forward")
    assert_close(gx, RL.linear_grad_input(grad.to(d), y40.to(d), w40.to(d), *act), dtype, "input gradient")
    gw_ref, gb_ref = RL.linear_grad_weight(grad.to(d), y40.to(d), x40.to(d), *act, True)
    assert_close(gw, gw_ref, dtype, "weight gradient")
    assert_close(gb, gb_ref, dtype, "bias gradient")


def test_compiled_k_loops_have_two_blocks_to_pipeline():
    """As launched on an H100 (emulated, launches stubbed): a reduction that fits one
    BLOCK_K of the table's tile gets a smaller BLOCK_K, so that the compiled K loop has
    at least two blocks for cp.async to overlap (K = 32 at 32, the weight gradient of a
    64-row batch at 64); the interpreter keeps the table's single block."""
    from fastgan.bench.launches import recording_launches
    from fastgan.kernels import _tiles
    from fastgan.kernels import linear as KL

    bf16 = torch.bfloat16
    x, w, grad = torch.randn(64, 32, dtype=bf16), torch.randn(128, 32, dtype=bf16), torch.randn(64, 128, dtype=bf16)
    act = ("linear", 0.2, 1.0, None)
    with _tiles.emulating("cuda_90", 132), recording_launches(execute=False) as launches:
        KL.linear_fwd(x, w, None, *act)
        KL.linear_grad_weight(grad, None, x, *act, True)
    fwd, wgrad = (_launch_args(launch) for launch in launches)
    table = _tiles.load_table("cuda_90.json")
    assert table["gemm"]["default"].BLOCK_K == 32 and fwd["BLOCK_K"] == 16
    assert table["gemm_wgrad"]["default"].BLOCK_K == 64 and wgrad["BLOCK_K"] == 32
    assert fwd["ITERS_PER_SPLIT"] == 2 and wgrad["ITERS_PER_SPLIT"] == 2  # one program's K loop
    with recording_launches() as launches:
        KL.linear_fwd(x.float(), w.float(), None, *act)
    assert _launch_args(launches[0])["BLOCK_K"] == 32  # interpreter: one block
