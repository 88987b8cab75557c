"""The conv and linear launchers: the outputs' layouts agree with the ops' fake
implementations (torch.library.opcheck on the Triton backend), layouts and split
reductions do not change results, bad preconditions and bad tile configs are
rejected with a clear error before any launch."""

import pytest
import torch
from torch.library import opcheck

import fastgan
from fastgan.kernels import _tiles
from fastgan.kernels._common import emulating
from fastgan.kernels import conv as KC
from fastgan.kernels import linear as KL
from fastgan.reference import conv as RC
from kernel_cases import forced_tiles
from test_opcheck import CASES
from utils import Rand, assert_close

KERNEL_CASES = [name for name in CASES if name.startswith(("conv", "linear"))]


@pytest.mark.parametrize("name", KERNEL_CASES)
def test_opcheck_on_triton_backend(name):
    """Schema, autograd registration, fake tensors (the strides the kernels allocate
    must be the ones the fake implementations promise) and AOT dispatch, with the
    kernels as the real implementation."""
    op, args = CASES[name]
    with fastgan.use_backend("triton"):
        opcheck(op, args)


@pytest.mark.parametrize("transposed", [False, True])
def test_weight_layout_does_not_change_results(transposed):
    """An OIHW weight is repacked channels_last by the launcher; a channels_last weight
    is read as it is: both must give bitwise the same output (same values, same order
    of summation)."""
    rand = Rand(3)
    x = rand(2, 5, 6, 7, channels_last=True)
    w = rand(*((5, 4) if transposed else (4, 5)), 3, 3)
    args = ([2, 2], [1, 1], [1, 0] if transposed else [0, 0], transposed, "lrelu", 0.2, 1.0, None)
    y_oihw, _ = KC.conv_fwd(x, w, None, *args)
    y_cl, _ = KC.conv_fwd(x, w.contiguous(memory_format=torch.channels_last), None, *args)
    assert torch.equal(y_oihw, y_cl)


@pytest.mark.parametrize("transposed", [False, True])
def test_weight_gradient_split_reduction_matches_reference(transposed):
    """A forced split of the positions into 3 slices (float32 partials, then a reduction
    launch) and, for the transposed conv, one bias slot per (slice, phase)."""
    rand = Rand(4)
    # 98 positions (per phase) = 7 blocks of 16: slices of 3, 3 and 1 blocks.
    x = rand(2, 6, 7, 7) if transposed else rand(2, 6, 13, 13)
    out_hw = [14, 14] if transposed else [7, 7]  # transposed: output_padding 1
    grad = rand(2, 7, *out_hw, channels_last=True)
    y = rand(2, 7, *out_hw, channels_last=True).tanh()
    geo = ([3, 3], [2, 2], [1, 1], transposed, "tanh", 0.2, 1.0, None, True)
    tile = _tiles.Tile(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16, SPLIT_K=3)
    with forced_tiles({"conv_wgrad": tile}):
        gw, gb = KC.conv_grad_weight(grad, y, x, *geo)
    assert _tiles.split_count(tile, x.device, 1, 7) == 3
    gw_ref, gb_ref = RC.conv_grad_weight(grad.double(), y.double(), x.double(), *geo)
    assert_close(gw, gw_ref, torch.float32, "weight gradient")
    assert_close(gb, gb_ref, torch.float32, "bias gradient")


def test_launcher_rejects_mixed_dtypes():
    x, w = torch.randn(1, 3, 4, 4), torch.randn(2, 3, 3, 3, dtype=torch.float16)
    with pytest.raises(TypeError, match=r"conv_fwd: weight has dtype torch.float16 but x has torch.float32"):
        KC.conv_fwd(x, w, None, [1, 1], [0, 0], [0, 0], False, "relu", 0.2, 1.0, None)


def test_launcher_rejects_tensors_beyond_int32_offsets():
    """The kernels form int32 offsets: a tensor spanning more elements is refused (an
    expanded tensor has the shape without the memory)."""
    huge = torch.zeros(1, 1).expand(2**16, 2**16)
    w = torch.zeros(3, 2**16)
    with pytest.raises(ValueError, match=r"linear_fwd: x .* spans more than 2\*\*31 - 1 elements"):
        KL.linear_fwd(huge, w, None, "linear", 0.2, 1.0, None)


def test_launcher_rejects_a_missing_saved_tensor():
    g, w = torch.randn(2, 4, 3, 3), torch.randn(4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"conv_grad_input: act 'tanh' .* needs the saved tensor s"):
        KC.conv_grad_input(g, g.new_empty(0), w, [5, 5], [1, 1], [0, 0], False, "tanh", 0.2, 1.0, None)


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=8), r"BLOCK_K must be a power of two >= 16"),
        (dict(BLOCK_M=48, BLOCK_N=64, BLOCK_K=32), r"BLOCK_M must be a power of two >= 16"),
        (dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32, num_warps=3), r"num_warps must be"),
        (dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32, SPLIT_K=0), r"SPLIT_K must be a positive int"),
        (dict(BLOCK_M=64, BLOCK_N=64), r"bad tile config"),
    ],
)
def test_bad_tile_configs_are_rejected(bad, match):
    """tl.dot's K >= 16 (and the other block rules) are checked for every config, the
    interpreter's included: the interpreter itself would run a K = 8 block."""
    with pytest.raises(ValueError, match=match):
        _tiles.tile_from_dict(bad, "test")


def test_a_forced_tile_is_validated_too():
    with pytest.raises(ValueError, match=r"forced conv tile: BLOCK_K must be a power of two >= 16"):
        _tiles.force("conv", _tiles.Tile(BLOCK_M=64, BLOCK_N=64, BLOCK_K=8))


def _odd_layout(t: torch.Tensor, rand: Rand) -> torch.Tensor:
    """t's values in an unusual layout: every other row of a larger tensor (a storage
    offset and non-unit strides), dimensions permuted in memory."""
    perm = list(reversed(range(t.dim())))
    big = rand(*[2 * s for s in (t.shape[p] for p in perm)], dtype=t.dtype)
    view = big[tuple(slice(1, None, 2) for _ in perm)]
    view.copy_(t.permute(perm))
    return view.permute([perm.index(d) for d in range(t.dim())])


@pytest.mark.parametrize("transposed", [False, True])
def test_conv_kernels_read_any_strides(transposed):
    """Strided views with storage offsets, an expanded (stride 0) weight and bias: the
    three conv functions give the reference's results (the first-order tests only see
    NCHW and channels_last; second-order backward passes see the rest)."""
    rand = Rand(8)
    x = _odd_layout(rand(2, 5, 6, 7), rand)
    w = rand(*((5, 1) if transposed else (1, 5)), 3, 3)
    w = w.expand(5, 4, 3, 3) if transposed else w.expand(4, 5, 3, 3)
    b = rand(1).expand(4)
    geo = ([2, 2], [1, 1])
    op = [1, 0] if transposed else [0, 0]
    act = ("silu", 0.2, 1.5, 2.0)
    y, z = KC.conv_fwd(x, w, b, *geo, op, transposed, *act)
    y_ref, z_ref = RC.conv_fwd(x.double(), w.double(), b.double(), *geo, op, transposed, *act)
    assert_close(y, y_ref, torch.float32, "forward")
    grad = _odd_layout(rand(*y.shape), rand)
    s = _odd_layout(z, rand)
    gx = KC.conv_grad_input(grad, s, w, x.shape[2:], *geo, transposed, *act)
    gw, gb = KC.conv_grad_weight(grad, s, x, w.shape[2:], *geo, transposed, *act, True)
    gx_ref = RC.conv_grad_input(grad.double(), s.double(), w.double(), x.shape[2:], *geo, transposed, *act)
    gw_ref, gb_ref = RC.conv_grad_weight(grad.double(), s.double(), x.double(), w.shape[2:], *geo, transposed, *act, True)
    assert_close(gx, gx_ref, torch.float32, "input gradient")
    assert_close(gw, gw_ref, torch.float32, "weight gradient")
    assert_close(gb, gb_ref, torch.float32, "bias gradient")


def test_linear_kernels_read_any_strides():
    from fastgan.reference import linear as RL

    rand = Rand(9)
    x = _odd_layout(rand(7, 20), rand)
    w = rand(1, 20).expand(6, 20)
    b = rand(1).expand(6)
    act = ("sigmoid", 0.2, 1.0, None)
    y, _ = KL.linear_fwd(x, w, b, *act)
    y_ref, _ = RL.linear_fwd(x.double(), w.double(), b.double(), *act)
    assert_close(y, y_ref, torch.float32, "forward")
    grad = _odd_layout(rand(7, 6), rand)
    s = _odd_layout(y, rand)
    gx = KL.linear_grad_input(grad, s, w, *act)
    gw, gb = KL.linear_grad_weight(grad, s, x, *act, True)
    assert_close(gx, RL.linear_grad_input(grad.double(), s.double(), w.double(), *act), torch.float32, "input gradient")
    gw_ref, gb_ref = RL.linear_grad_weight(grad.double(), s.double(), x.double(), *act, True)
    assert_close(gw, gw_ref, torch.float32, "weight gradient")
    assert_close(gb, gb_ref, torch.float32, "bias gradient")


def test_cached_launch_plans_follow_forced_tiles_and_emulation():
    """A launch plan is cached per call signature; the tile state it was made under is
    part of its key, so forcing a tile or emulating a GPU plans again."""
    from fastgan.bench.launches import recording_launches
    from fastgan.kernels import _common

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 8, 8, generator=gen).contiguous(memory_format=torch.channels_last)
    w = torch.randn(16, 8, 3, 3, generator=gen)

    def launched():
        with recording_launches(execute=False) as launches:
            KC.conv_fwd(x, w, None, [1, 1], [1, 1], [0, 0], False, "relu", 0.2, 1.0, None)
        (launch,) = launches
        return launch.grid, launch.kwargs["BLOCK_M"], launch.kwargs["DOT_PRECISION"]

    first = launched()
    assert launched() == first
    small = _tiles.Tile(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16, GROUP_M=1)
    _tiles.force("conv", small)
    try:
        forced = launched()
    finally:
        _tiles.force("conv", None)
    assert forced[1] == 16 and forced[0][0] == -(-128 // 16) * 1  # 128 rows, 16 channels in one column tile
    assert launched() == first
    with _common.emulating("cuda_90", 132):
        assert launched()[1] == _tiles.pick("conv", x.device, x.dtype, 128, 16, 72).BLOCK_M
    # A new signature is checked again: a bad bias still raises on a planned geometry.
    with pytest.raises(ValueError, match="bias must have shape"):
        KC.conv_fwd(x, w, torch.zeros(3), [1, 1], [1, 1], [0, 0], False, "relu", 0.2, 1.0, None)


_LAYOUTS = [torch.contiguous_format, torch.channels_last]


@pytest.mark.parametrize("shape, memory_format", [
    *[(shape, layout) for shape in [(2, 8, 4, 4), (0, 3, 4, 4), (2, 0, 4, 4), (1, 8, 1, 1), (2, 1, 5, 1)]
      for layout in _LAYOUTS],
    ((3, 8), torch.contiguous_format), ([3, 8], torch.contiguous_format), ((5,), torch.contiguous_format),
])
def test_new_output_is_what_torch_empty_allocates(shape, memory_format):
    """The launchers' output allocation (strides looked up once per shape, not worked
    out by torch.empty per call) gives torch.empty's shape, strides, dtype and device,
    NaN-filled under poison_outputs."""
    from fastgan.kernels import _common

    expected = torch.empty(shape, dtype=torch.float64, memory_format=memory_format)
    for poison in (False, True):
        with _common.poison_outputs(poison):
            out = _common.new_output(shape, torch.float64, torch.device("cpu"), memory_format)
        assert (out.shape, out.stride(), out.dtype, out.device) == \
            (expected.shape, expected.stride(), expected.dtype, expected.device)
        assert out.is_contiguous(memory_format=memory_format)
        if poison and out.numel():
            assert out.isnan().all()


def test_is_dense_tells_dense_layouts_from_gaps_and_overlaps():
    """kernels._common.is_dense (the loss launcher copies what it rejects): any
    permutation of a dense block is dense; a slice with gaps or an expanded
    (overlapping) tensor is not."""
    from fastgan.kernels._common import is_dense

    x = torch.randn(2, 3, 4, 5)
    dense = [x, x.contiguous(memory_format=torch.channels_last), x.permute(3, 1, 0, 2), x[:1], torch.randn(7)]
    assert all(is_dense(t) for t in dense)
    gapped = [x[:, :1], x[:, :, ::2], x[..., :4], torch.randn(8)[::2], torch.randn(1).expand(3), x[:1].expand(2, 3, 4, 5)]
    assert not any(is_dense(t) for t in gapped)


class _OutOfResourcesKernel:
    """A kernel whose launch fails as Triton's does when a tile needs more shared memory
    than the GPU has (seen on an H200: 264192 B against 232448 B)."""

    def __getitem__(self, grid):
        from triton.runtime.errors import OutOfResources

        def launch(*args, **kwargs):
            raise OutOfResources(264192, 232448, "shared memory")

        return launch


@pytest.mark.parametrize("which", ["gather", "wgrad", "gemm"])
def test_a_tile_that_does_not_fit_names_the_tile_and_where_it_came_from(monkeypatch, which):
    module, name = {"gather": (KC, "_conv_gather_kernel"), "wgrad": (KC, "_conv_wgrad_kernel"),
                    "gemm": (KL, "_gemm_kernel")}[which]
    monkeypatch.setattr(module, name, _OutOfResourcesKernel())
    rand = Rand(0)
    x, w, b = rand(2, 4, 6, 6), rand(5, 4, 3, 3), rand(5)
    # Tiles chosen as on an H100/H200 (kernels/configs/cuda_90.json), run by the interpreter.
    with fastgan.use_backend("triton"), emulating("cuda_90", 132), pytest.raises(RuntimeError) as caught:
        if which == "gemm":
            fastgan.functional.linear_bias_act(rand(3, 20), rand(7, 20), rand(7), act="relu")
        elif which == "gather":
            fastgan.functional.conv2d_bias_act(x, w, b, padding=1, act="relu")
        else:
            x.requires_grad_(True)
            w.requires_grad_(True)
            y = fastgan.functional.conv2d_bias_act(x, w, b, padding=1, act="relu")  # the gather kernel runs
            y.sum().backward()
    text = str(caught.value)
    assert "BLOCK_M" in text and "num_warps" in text and "Required: 264192" in text
    assert "kernels/configs/cuda_90.json" in text and "--vet" in text
    assert caught.value.__cause__ is not None


def test_a_forced_tile_that_does_not_fit_is_named_as_forced(monkeypatch):
    monkeypatch.setattr(KC, "_conv_gather_kernel", _OutOfResourcesKernel())
    rand = Rand(0)
    tile = _tiles.Tile(BLOCK_M=32, BLOCK_N=16, BLOCK_K=16, GROUP_M=8, num_warps=4, num_stages=2)
    with fastgan.use_backend("triton"), forced_tiles({"conv": tile}), pytest.raises(RuntimeError, match="forced for conv"):
        fastgan.functional.conv2d_bias_act(rand(2, 4, 6, 6), rand(5, 4, 3, 3), rand(5), padding=1, act="relu")
