"""Launch plans and dispatch decisions are cached per call signature (kernels/_plans.py,
fastgan._backend): a cached decision must never outlive the setting it was made
under. Each test makes a call, changes one setting between two identical calls, and
checks the second call's launches (recorded, not run) follow the new setting, and that
going back gives the first launches again."""

import pytest
import torch

import fastgan
from fastgan import _backend
from fastgan import functional as FG
from fastgan.bench.launches import recording_launches
from fastgan.kernels import _common, _tiles
from fastgan.kernels import batch_norm as KB
from fastgan.kernels import conv as KC
from fastgan.kernels import linear as KL

pytestmark = pytest.mark.skipif(not _backend.interpreter_enabled(), reason="backend 'triton' on CPU tensors needs TRITON_INTERPRET=1")

GEN = torch.Generator().manual_seed(0)


def randn(*shape, channels_last=False):
    t = torch.randn(*shape, generator=GEN)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def launches_of(fn):
    """(kernel name, grid, tile and precision constexprs) of every launch fn makes."""
    with recording_launches(execute=False) as launches:
        fn()
    keys = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "BLOCK_R", "BLOCK_C", "DOT_PRECISION", "SPLIT_W", "STATS", "SUMS", "LAYOUT")
    return [(l.name, l.grid, tuple((k, l.kwargs[k]) for k in keys if k in l.kwargs)) for l in launches]


def set_tf32(family, allowed):
    """Set PyTorch's float32 precision for the eager op of `family` (both APIs)."""
    if family == "conv":
        node, legacy = getattr(torch.backends.cudnn, "conv", None), torch.backends.cudnn
    else:
        node, legacy = torch.backends.cuda.matmul, torch.backends.cuda.matmul
    if node is not None and hasattr(node, "fp32_precision"):
        node.fp32_precision = "tf32" if allowed else "ieee"
    else:
        legacy.allow_tf32 = allowed


@pytest.fixture
def restore_precision():
    conv = getattr(torch.backends.cudnn, "conv", None)
    saved = [(node, node.fp32_precision) for node in (conv, torch.backends.cuda.matmul)
             if node is not None and hasattr(node, "fp32_precision")]
    legacy = None if saved else (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    yield
    for node, value in saved:
        node.fp32_precision = value
    if legacy is not None:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = legacy


def conv_step(x, w):
    """conv_fwd, conv_grad_input and conv_grad_weight of one layer."""
    args = ([2, 2], [1, 1], False, "lrelu", 0.2, 1.0, None)
    y, _ = KC.conv_fwd(x, w, None, [2, 2], [1, 1], [0, 0], False, "lrelu", 0.2, 1.0, None)
    KC.conv_grad_input(y, y, w, list(x.shape[2:]), *args)
    KC.conv_grad_weight(y, y, x, [4, 4], *args, True)


def test_conv_plans_follow_the_tf32_setting_between_calls(restore_precision):
    """Forward, input-gradient and weight-gradient plans are cached with the TF32
    setting they read: switching cuDNN's setting between two identical calls changes
    the dot precision of every conv launch (emulating a GPU, where the setting
    counts), and switching back restores the first plans."""
    x, w = randn(2, 8, 8, 8, channels_last=True), randn(16, 8, 4, 4, channels_last=True)
    with _common.emulating("cuda_90", 132):
        set_tf32("conv", True)
        with_tf32 = launches_of(lambda: conv_step(x, w))
        assert launches_of(lambda: conv_step(x, w)) == with_tf32  # cached: the same launches
        set_tf32("conv", False)
        without = launches_of(lambda: conv_step(x, w))
        set_tf32("conv", True)
        again = launches_of(lambda: conv_step(x, w))
    precision = [dict(k)["DOT_PRECISION"] for _, _, k in with_tf32]
    assert precision == ["tf32"] * 3
    assert [dict(k)["DOT_PRECISION"] for _, _, k in without] == ["ieee"] * 3
    assert again == with_tf32


def test_linear_plans_follow_the_matmul_setting_not_the_conv_one(restore_precision):
    x, w = randn(4, 32), randn(16, 32)
    with _common.emulating("cuda_90", 132):
        set_tf32("linear", False)
        first = launches_of(lambda: KL.linear_fwd(x, w, None, "relu", 0.2, 1.0, None))
        set_tf32("conv", not _tiles.tf32_allowed("conv"))  # the other family's setting: no effect
        assert launches_of(lambda: KL.linear_fwd(x, w, None, "relu", 0.2, 1.0, None)) == first
        set_tf32("linear", True)
        second = launches_of(lambda: KL.linear_fwd(x, w, None, "relu", 0.2, 1.0, None))
    assert dict(first[0][2])["DOT_PRECISION"] == "ieee"
    assert dict(second[0][2])["DOT_PRECISION"] == "tf32"


def test_generic_precision_setting_reaches_cached_plans(restore_precision):
    """torch.backends.fp32_precision (the node above cuDNN's and cuBLAS's) decides
    when the specific nodes say 'none'."""
    if not hasattr(torch.backends, "fp32_precision") or getattr(torch.backends.cudnn, "conv", None) is None:
        pytest.skip("this PyTorch has no fp32_precision API")
    saved = torch.backends.fp32_precision
    x, w = randn(2, 8, 8, 8, channels_last=True), randn(16, 8, 4, 4, channels_last=True)
    call = lambda: KC.conv_fwd(x, w, None, [2, 2], [1, 1], [0, 0], False, "relu", 0.2, 1.0, None)  # noqa: E731
    # torch.testing's common_utils (imported by test_opinfo) freezes torch.backends' own
    # flags for the rest of the session: this test sets them on purpose.
    unfrozen = getattr(torch.backends, "__allow_nonbracketed_mutation")
    try:
        with unfrozen(), _common.emulating("cuda_90", 132):
            torch.backends.fp32_precision = "ieee"
            torch.backends.cudnn.conv.fp32_precision = "none"
            torch.backends.cudnn.fp32_precision = "none"
            ieee = launches_of(call)
            torch.backends.fp32_precision = "tf32"
            torch.backends.cudnn.conv.fp32_precision = "none"
            torch.backends.cudnn.fp32_precision = "none"
            tf32 = launches_of(call)
    finally:
        with unfrozen():
            torch.backends.fp32_precision = saved
    assert dict(ieee[0][2])["DOT_PRECISION"] == "ieee"
    assert dict(tf32[0][2])["DOT_PRECISION"] == "tf32"


def test_plans_follow_emulation_and_forced_tiles_between_calls():
    """The weight gradient's tile and split-K, and batch norm's launch config, are
    planned for the GPU being emulated (or the interpreter), and a forced tile replaces
    the planned one, each from the next call on."""
    x, w = randn(4, 16, 16, 16, channels_last=True), randn(32, 16, 4, 4, channels_last=True)
    bn_x = randn(8, 16, 16, 16, channels_last=True)
    bn_w = randn(16)

    def calls():
        conv_step(x, w)
        KB.bn_fwd(bn_x, bn_w, bn_w, None, None, True, 1e-5, "relu", 0.2)

    interpreter = launches_of(calls)
    with _common.emulating("cuda_90", 132):
        h100 = launches_of(calls)
    with _common.emulating("cuda_80", 108):
        a100 = launches_of(calls)
    assert launches_of(calls) == interpreter
    assert h100 != interpreter
    # Batch norm: the interpreter's config differs from the GPU's (tile, programs).
    assert [l for l in interpreter if l[0].startswith("_bn")] != [l for l in h100 if l[0].startswith("_bn")]
    # The split count follows the SM count of the emulated GPU.
    wgrad = lambda ls: next(l for l in ls if l[0] == "_conv_wgrad_kernel")  # noqa: E731
    assert wgrad(h100)[1] != wgrad(a100)[1]
    small = _tiles.Tile(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16, GROUP_M=1, SPLIT_K=1)
    _tiles.force("conv_wgrad", small)
    try:
        forced = wgrad(launches_of(calls))
    finally:
        _tiles.force("conv_wgrad", None)
    assert dict(forced[2])["BLOCK_M"] == 16 and dict(forced[2])["SPLIT_W"] is False
    assert wgrad(launches_of(calls)) == wgrad(interpreter)


def test_batch_norm_plans_follow_configured_and_layout():
    """A config a test forces with configured() is planned for, and only while in
    force; an NCHW and a channels_last input of one shape get their own plans."""
    x = randn(8, 16, 16, 16)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    w = randn(16)
    fwd = lambda t: KB.bn_fwd(t, w, w, None, None, True, 1e-5, "relu", 0.2)  # noqa: E731
    default = launches_of(lambda: fwd(x))
    with KB.configured(fused_max_tiles=0, target_programs=4):
        split = launches_of(lambda: fwd(x))
    assert launches_of(lambda: fwd(x)) == default
    assert [name for name, _, _ in split] == ["_bn_stats_kernel", "_bn_normalize_kernel"]
    assert split != default
    assert dict(launches_of(lambda: fwd(x_cl))[-1][2])["LAYOUT"] == KB.ROWS
    assert dict(default[-1][2])["LAYOUT"] == KB.PLANES


def test_a_new_signature_is_checked_after_a_cached_one():
    """The checks run with the planning: a call with a bad argument after good calls
    of a neighbouring signature still raises, before any launch."""
    x = randn(8, 16, 4, 4)
    w = randn(16)
    KB.bn_fwd(x, w, w, None, None, True, 1e-5, "relu", 0.2)
    with recording_launches(execute=False) as launches, pytest.raises(ValueError, match="must have shape"):
        KB.bn_fwd(x, randn(15), w, None, None, True, 1e-5, "relu", 0.2)
    assert launches == []
    g = randn(2, 16, 4, 4)
    xc = randn(2, 8, 8, 8)
    KC.conv_grad_weight(g, g, xc, [4, 4], [2, 2], [1, 1], False, "relu", 0.2, 1.0, None, False)
    with recording_launches(execute=False) as launches, pytest.raises(ValueError, match="batch"):
        KC.conv_grad_weight(g, g, randn(3, 8, 8, 8), [4, 4], [2, 2], [1, 1], False, "relu", 0.2, 1.0, None, False)
    assert launches == []


def test_backend_switch_between_identical_module_calls():
    """A fused module's second call with the same signature takes the public
    function's checks' shortcut: the backend in force is still read per call."""
    conv = fastgan.nn.Conv2dAct(8, 16, 4, 2, 1, act="relu")
    bn = fastgan.nn.BatchNormAct2d(16, act="relu")
    x = randn(2, 8, 8, 8, channels_last=True)

    def step():
        with recording_launches(execute=False) as launches:
            bn(conv(x))
        return len(launches)

    with fastgan.use_backend("triton"):
        assert step() > 0
        assert step() > 0
    with fastgan.use_backend("reference"):
        assert step() == 0
    with fastgan.use_backend("triton"):
        assert step() > 0


def test_interpreter_mode_is_the_kernels_mode():
    """Once the kernels are imported, the backend's view of the interpreter is the
    mode Triton decorated them in, whatever the environment says later."""
    import os

    before = os.environ.get("TRITON_INTERPRET")
    assert _backend.interpreter_enabled() == _common.interpreting()
    kernel = KC._conv_gather_kernel
    from triton.runtime.interpreter import InterpretedFunction

    assert isinstance(kernel, InterpretedFunction) == _common.interpreting()
    os.environ["TRITON_INTERPRET"] = "0" if _common.interpreting() else "1"
    try:
        assert _backend.interpreter_enabled() == _common.interpreting() == isinstance(kernel, InterpretedFunction)
    finally:
        if before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = before


def test_empty_problems_still_take_the_reference_after_cached_calls():
    """resolve() walks its tensors once: an empty input after non-empty calls of the
    same op still runs the reference (no launch, an empty result)."""
    w = randn(16, 8, 4, 4)
    with fastgan.use_backend("triton"), recording_launches(execute=False) as launches:
        FG.conv2d_bias_act(randn(2, 8, 8, 8), w, None, stride=2, padding=1, act="relu")
        n = len(launches)
        y = FG.conv2d_bias_act(randn(0, 8, 8, 8), w, None, stride=2, padding=1, act="relu")
    assert n > 0 and len(launches) == n
    assert y.shape == (0, 16, 4, 4)
    with fastgan.use_backend("triton"):
        # The "not computed" stand-in (1-D, empty, between matrices) is not an empty problem.
        assert _backend.resolve(randn(2, 3), torch.empty(0), randn(2, 3)) == "triton"
        assert _backend.resolve(randn(2, 3), torch.empty(0)) == "reference"
        assert _backend.resolve(randn(0, 3), torch.empty(0), randn(2, 3)) == "reference"
