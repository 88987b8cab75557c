"""GPU sweep of the conv and linear kernels: every tile config shipped in
kernels/configs, float32 / float16 / bfloat16, NCHW and channels_last inputs, forward
and the three gradients against a float64 reference, with the tolerances of utils.TOLERANCE.

Needs a CUDA device (skipped elsewhere, tests/conftest.py) and compiled kernels: run
    TRITON_INTERPRET=0 python -m pytest -m gpu tests/kernels/test_gpu_sweep.py
(tests/conftest.py turns the interpreter on unless TRITON_INTERPRET is already set).
"""

import pytest
import torch
import torch.nn.functional as F

import fastgan
from dcgan import layer_shapes
from fastgan import functional as FG
from fastgan.kernels import _tiles
from fastgan.kernels._common import interpreting
from kernel_cases import forced_tiles
from test_functional import torch_act
from utils import Rand, assert_close, derivative_bound, grads, leaf, magnitudes

pytestmark = pytest.mark.gpu

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _shipped_entries():
    """(file, kind, key, tile, dtype) for every tile of every shipped file; a tile tuned
    for one dtype (its key's prefix) is run with that dtype only, a default with all."""
    out = []
    for name in _tiles.config_names():
        for kind, entry in _tiles.load_table(name).items():
            for dname, dtype in DTYPES.items():
                out.append((name, kind, "default", entry["default"], dtype))
            for key, tile in entry["by_shape"].items():
                if key.split("_")[0] in DTYPES:
                    out.append((name, kind, key, tile, DTYPES[key.split("_")[0]]))
    return out


ENTRIES = _shipped_entries()

# (transposed, n, c_in, c_out, hw, kernel, stride, padding, output_padding, act):
# odd and tiny channel counts, 1-pixel inputs, strides 1-3, every activation, and two
# DCGAN-64 layers at batch 4.
CONV_CASES = [
    (False, 3, 3, 5, (9, 7), (3, 3), (2, 1), (1, 0), (0, 0), "lrelu"),
    (False, 2, 1, 1, (1, 1), (1, 1), (1, 1), (0, 0), (0, 0), "sigmoid"),
    (False, 2, 37, 19, (11, 6), (5, 2), (3, 2), (2, 1), (0, 0), "silu"),
    (True, 3, 5, 3, (7, 4), (4, 3), (2, 3), (1, 0), (1, 2), "tanh"),
    (True, 2, 100, 64, (1, 1), (4, 4), (1, 1), (0, 0), (0, 0), "relu"),
    (True, 2, 18, 7, (5, 5), (1, 1), (2, 2), (0, 0), (1, 1), "linear"),
]
for _name, _tr, _xs, _ws, _s, _p in layer_shapes(batch=4):
    if _name in ("G1", "D1"):
        _cin, _cout = (_ws[0], _ws[1]) if _tr else (_ws[1], _ws[0])
        CONV_CASES.append((_tr, _xs[0], _cin, _cout, _xs[2:], _ws[2:], (_s, _s), (_p, _p), (0, 0), "relu"))


@pytest.fixture(autouse=True)
def _compiled_kernels():
    if interpreting():
        pytest.fail("the GPU sweep tests compiled kernels: run it with TRITON_INTERPRET=0")
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    _allow_tf32(False)  # float32: ieee dots, tolerance 1e-5
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _allow_tf32(allowed: bool) -> None:
    """Both settings the kernels follow (kernels/_tiles.tf32_allowed): convs follow
    cuDNN's, linear layers cuBLAS matmul's."""
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def _check(fast, plain, linear_part, act, inputs, dtype, rand, factor=1.0):
    """Forward and every input gradient of fast(*inputs) against plain() in float64 on
    the GPU (as tests/test_functional.check_against_torch, with device-side tensors)."""
    y = fast(*inputs)
    ref_inputs = [None if t is None else leaf(t.detach().double()) for t in inputs]
    ref = plain(*ref_inputs)
    assert y.dtype == dtype and y.is_cuda
    upstream = rand(*y.shape, dtype=dtype).cuda()
    y_mag, grad_mags = magnitudes(linear_part, inputs, upstream, derivative_bound(act["act"], act["alpha"], act["gain"]))
    assert_close(y, ref, dtype, "forward", factor=factor, magnitude=y_mag)
    got = grads(y, inputs, upstream)
    want = grads(ref, ref_inputs, upstream.double())
    for name, g, r, m in zip(["input", "weight", "bias"], got, want, grad_mags):
        assert_close(g, r, dtype, f"grad {name}", factor=factor, magnitude=m)
    return y


def _run_conv(case, dtype, channels_last, seed, factor=1.0):
    transposed, n, c_in, c_out, hw, k, stride, padding, output_padding, act_name = case
    rand = Rand(seed)
    x = leaf(rand(n, c_in, *hw, dtype=dtype, channels_last=channels_last).cuda())
    w_shape = (c_in, c_out, *k) if transposed else (c_out, c_in, *k)
    w = leaf(rand(*w_shape, dtype=dtype, scale=(c_in * k[0] * k[1]) ** -0.5).cuda())
    b = leaf(rand(c_out, dtype=dtype).cuda())
    act = dict(act=act_name, alpha=None, gain=1.3, clamp=2.0 if act_name == "silu" else None)
    geo = dict(stride=stride, padding=padding)
    if transposed:
        geo["output_padding"] = output_padding
    fast_fn, plain_fn = (FG.conv_transpose2d_bias_act, F.conv_transpose2d) if transposed else (FG.conv2d_bias_act, F.conv2d)
    with fastgan.use_backend("triton"):
        y = _check(
            lambda x, w, b: fast_fn(x, w, b, **geo, **act),
            lambda x, w, b: torch_act(plain_fn(x, w, b, **geo), **act),
            lambda x, w, b: plain_fn(x, w, b, **geo),
            act, [x, w, b], dtype, rand, factor,
        )
    assert y.is_contiguous(memory_format=torch.channels_last)


def _run_linear(dtype, seed, factor=1.0):
    rand = Rand(seed)
    for m, k, n in [(7, 3, 5), (300, 100, 64), (64, 513, 1)]:
        x = leaf(rand(m, k, dtype=dtype).cuda())
        w = leaf(rand(n, k, dtype=dtype, scale=k**-0.5).cuda())
        b = leaf(rand(n, dtype=dtype).cuda())
        act = dict(act="tanh", alpha=None, gain=None, clamp=None)
        with fastgan.use_backend("triton"):
            _check(
                lambda x, w, b: FG.linear_bias_act(x, w, b, **act),
                lambda x, w, b: torch_act(F.linear(x, w, b), **act),
                lambda x, w, b: F.linear(x, w, b),
                act, [x, w, b], dtype, rand, factor,
            )


@pytest.mark.parametrize("name,kind,key,tile,dtype", ENTRIES,
                         ids=[f"{e[0]}-{e[1]}-{e[2]}-{str(e[4])[6:]}" for e in ENTRIES])
def test_every_shipped_tile(name, kind, key, tile, dtype):
    with forced_tiles({kind: tile}):
        if kind.startswith("conv"):
            for i, case in enumerate(CONV_CASES):
                for channels_last in (False, True):
                    _run_conv(case, dtype, channels_last, seed=i)
        else:
            _run_linear(dtype, seed=0)


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
def test_default_lookup_on_this_device(dtype):
    """The tiles the launchers pick by themselves on this device (its own file, or
    default.json)."""
    for i, case in enumerate(CONV_CASES):
        _run_conv(case, dtype, channels_last=True, seed=100 + i)
    _run_linear(dtype, seed=100)


def test_float32_with_tf32_allowed():
    """TF32 allowed (PyTorch's default for convolutions) switches the float32 dots to
    TF32; the tolerance is 5e-3 then (500 x the ieee tolerance of 1e-5)."""
    _allow_tf32(True)
    for i, case in enumerate(CONV_CASES):
        _run_conv(case, torch.float32, channels_last=True, seed=200 + i, factor=500)
    _run_linear(torch.float32, seed=200, factor=500)
