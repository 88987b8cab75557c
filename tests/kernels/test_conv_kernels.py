"""The Triton conv kernels (fastgan.kernels.conv), run by Triton's interpreter through
fastgan's public functions with backend 'triton', against the float64 composition of
torch.nn.functional: forward, and the gradients of input, weight and bias (which run
the input-gradient and weight-gradient kernels). Outputs are poisoned with NaN before
every launch (tests/conftest.py), inputs are fresh random tensors per example.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from torch.autograd import gradgradcheck

import fastgan
from dcgan import layer_shapes
from fastgan import functional as FG
from fastgan.reference.conv import output_size
from kernel_cases import EXAMPLES, SMALL, forced_tiles, tile_choices
from strategies import activation, conv_case, seeds
from test_functional import check_against_torch, conv_inputs, torch_act
from utils import Rand, leaf

DTYPES = [torch.float32, torch.float16]

# Up to 20 channels: with the small forced tiles (BLOCK_K 16) counts of 16 and more
# take the one-tap-per-block path with a masked channel tail; fewer, the flattened one.
MAX_CHANNELS = 20


def _programs(n, hw, channels, block=16):
    return -(-n * hw[0] * hw[1] // block) * -(-channels // block)


def _run_conv_case(case, act, seed, tiles, dtype, transposed):
    if tiles is SMALL:
        # 16 x 16 tiles: one interpreted program per 16 output rows and channels. Keep
        # the count (and the test's time) bounded; larger shapes run with large tiles.
        out_hw = output_size((case["h"], case["w"]), case["kernel"], case["stride"], case["padding"],
                             case["output_padding"], transposed)
        assume(_programs(case["n"], out_hw, case["c_out"]) + _programs(case["n"], (case["h"], case["w"]), case["c_in"]) <= 40)
    rand = Rand(seed)
    x, w, b = conv_inputs(case, dtype, transposed, rand)
    if transposed:
        geo = dict(stride=case["stride"], padding=case["padding"], output_padding=case["output_padding"])
        fast_fn, plain_fn = FG.conv_transpose2d_bias_act, F.conv_transpose2d
    else:
        geo = dict(stride=case["stride"], padding=case["padding"])
        fast_fn, plain_fn = FG.conv2d_bias_act, F.conv2d
    with fastgan.use_backend("triton"), forced_tiles(tiles):
        y = check_against_torch(
            lambda x, w, b: fast_fn(x, w, b, **geo, **act),
            lambda x, w, b: torch_act(plain_fn(x, w, b, **geo), **act),
            lambda x, w, b: plain_fn(x, w, b, **geo),
            act,
            [x, w, b],
            dtype,
            rand,
        )
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=EXAMPLES)
@given(case=conv_case(transposed=False, max_spatial=7, max_channels=MAX_CHANNELS), act=activation(),
       seed=seeds, tiles=tile_choices)
def test_conv2d_kernels_match_reference(dtype, case, act, seed, tiles):
    _run_conv_case(case, act, seed, tiles, dtype, transposed=False)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=EXAMPLES)
@given(case=conv_case(transposed=True, max_spatial=6, max_channels=MAX_CHANNELS), act=activation(),
       seed=seeds, tiles=tile_choices)
def test_conv_transpose2d_kernels_match_reference(dtype, case, act, seed, tiles):
    _run_conv_case(case, act, seed, tiles, dtype, transposed=True)


# The activation each DCGAN-64 layer is fused with once its batch norm is folded in
# (fastgan.nn.fuse keeps BN separate; this exercises every epilogue on real shapes).
DCGAN_ACT = {"G4": "tanh", "D0": "lrelu", "D1": "lrelu", "D2": "lrelu", "D3": "lrelu", "D4": "sigmoid"}


@pytest.mark.parametrize("name,transposed,x_shape,w_shape,stride,padding", layer_shapes(batch=2),
                         ids=[s[0] for s in layer_shapes(batch=2)])
def test_dcgan64_layer_matches_reference(name, transposed, x_shape, w_shape, stride, padding):
    """Every conv layer of the DCGAN-64 generator and discriminator at batch 2, float32
    (ieee dot): forward and all three gradients. Inner layers read channels_last
    activations, the first layers an NCHW latent / image batch, as in training."""
    rand = Rand(sum(map(ord, name)))
    first = name in ("G0", "D0")
    c_out = w_shape[1] if transposed else w_shape[0]
    x = leaf(rand(*x_shape, channels_last=not first))
    w = leaf(rand(*w_shape, scale=(w_shape[0 if transposed else 1] * 16) ** -0.5))
    b = leaf(rand(c_out, scale=0.1))
    act = dict(act=DCGAN_ACT.get(name, "relu"), alpha=None, gain=None, clamp=None)
    fast_fn, plain_fn = (FG.conv_transpose2d_bias_act, F.conv_transpose2d) if transposed else (FG.conv2d_bias_act, F.conv2d)
    with fastgan.use_backend("triton"):
        check_against_torch(
            lambda x, w, b: fast_fn(x, w, b, stride=stride, padding=padding, **act),
            lambda x, w, b: torch_act(plain_fn(x, w, b, stride, padding), **act),
            lambda x, w, b: plain_fn(x, w, b, stride, padding),
            act,
            [x, w, b],
            torch.float32,
            rand,
        )


@pytest.mark.parametrize(
    "transposed,act,clamp",
    # silu saves z (its second order runs through dL/dz); tanh with a clamp reads its
    # derivative and the clamp mask off y. Every act's second order is checked on the
    # reference backend in tests/test_double_backward.py; here the kernels are the point.
    [(False, "silu", None), (True, "tanh", 0.9)],
)
def test_conv_gradgradcheck_through_kernels(transposed, act, clamp):
    """Second order (R1 / WGAN-GP) through the kernels, float64: the backward's own
    backward runs the same three kernels. fast_mode checks a random projection of the
    Jacobian (each full Jacobian column would be a launch of the interpreter)."""
    gen = torch.Generator().manual_seed(5)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).requires_grad_()

    x = r(2, 3, 5, 4)
    w = r(*((3, 2) if transposed else (2, 3)), 3, 2, scale=0.5)
    b = r(2)

    def f(x, w, b):
        if transposed:
            return FG.conv_transpose2d_bias_act(x, w, b, stride=2, padding=1, output_padding=1, act=act,
                                                gain=1.3, clamp=clamp)
        return FG.conv2d_bias_act(x, w, b, stride=2, padding=1, act=act, gain=1.3, clamp=clamp)

    with fastgan.use_backend("triton"):
        assert gradgradcheck(f, (x, w, b), fast_mode=True)
