"""Split-K weight gradients reduce their partial sums inside the launch: the last
program of each output tile to arrive sums the fp32 slots in slot order
(kernels/_arrival.py). Checked on the interpreter with a forced split: one launch per
gradient, the result is bit for bit the slot-order sum of the workspace the programs
wrote (what a separate reduction pass gave), it matches the float64 gradient, and the
tile counters are back to zero afterwards so the next call (or a CUDA graph replay)
starts clean. The workspaces are views of the per-device scratch buffer, the bias's
after the weight's. Outputs and workspaces are poisoned with NaN (tests/conftest.py)."""

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F

from fastgan.bench.launches import recording_launches
from fastgan.kernels import _arrival, _tiles
from fastgan.kernels import conv as KC
from fastgan.kernels import linear as KL
from kernel_cases import forced_tiles
from utils import Rand

SPLIT3 = _tiles.Tile(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16, GROUP_M=2, SPLIT_K=3)


@pytest.fixture
def workspaces(monkeypatch):
    """Every partial-sum workspace the launchers allocate, in order."""
    made = []

    def keep(module):
        original = module.partials_buffer

        def partials_buffer(*args):
            made.append(original(*args))
            return made[-1]

        monkeypatch.setattr(module, "partials_buffer", partials_buffer)

    keep(KC)
    keep(KL)
    return made


def _slot_order_sum(ws: torch.Tensor) -> torch.Tensor:
    total = ws[0].clone()
    for slot in ws[1:]:
        total += slot
    return total


def _one_scratch_without_overlap(ws, bias_ws):
    """The launch's two workspaces are views of the scratch buffer (nothing allocated
    per launch), the bias's after the weight's with no element shared."""
    scratch = _arrival._scratch[(ws.device, ws.dtype)]
    assert ws.untyped_storage().data_ptr() == bias_ws.untyped_storage().data_ptr() == scratch.data_ptr()
    assert bias_ws.data_ptr() >= ws.data_ptr() + ws.numel() * ws.element_size()
    assert bias_ws.data_ptr() % 16 == 0


def _counters_zero(device) -> bool:
    buf = _arrival._counters.get(torch.device(device))
    return buf is not None and not buf.any()


def _rel(out, ref):
    return ((out.double() - ref).norm() / ref.norm()).item()


CONV_CASES = [
    # transposed, x shape, weight shape, stride, padding
    (False, (2, 5, 8, 8), (20, 5, 3, 3), 1, 1),  # split 3: 128 positions in 8 K blocks
    (True, (2, 20, 6, 6), (20, 6, 4, 4), 2, 1),  # 4 phases x split 3 bias slots
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("transposed,x_shape,w_shape,stride,padding", CONV_CASES)
def test_conv_wgrad_reduces_partials_in_one_launch(workspaces, dtype, transposed, x_shape, w_shape, stride, padding):
    rand = Rand(7 + transposed)
    x = rand(*x_shape, dtype=dtype, channels_last=True)
    w = rand(*w_shape, dtype=torch.float64)
    conv = F.conv_transpose2d if transposed else F.conv2d
    y_shape = conv(x.double(), w, stride=stride, padding=padding).shape
    grad = rand(*y_shape, dtype=dtype, channels_last=True)
    s = rand(*y_shape, dtype=dtype, channels_last=True)  # relu's saved output: its sign masks grad
    with forced_tiles({"conv_wgrad": SPLIT3}), recording_launches() as launches:
        gw, gb = KC.conv_grad_weight(grad, s, x, w_shape[2:], [stride] * 2, [padding] * 2, transposed,
                                     "relu", 0.2, 1.0, None, True)
    assert [launch.name for launch in launches] == ["_conv_wgrad_kernel"]
    ws, gb_ws = workspaces
    assert ws.shape[0] == 3 and gb_ws.shape[0] == 3 * stride * stride
    _one_scratch_without_overlap(ws, gb_ws)
    assert not ws.isnan().any() and not gb_ws.isnan().any(), "a program left its slot unwritten"
    # Bit for bit the slot-order sum of the partials, whichever program finished last.
    assert torch.equal(gw, _slot_order_sum(ws).view(gw.shape).to(dtype))
    assert torch.equal(gb, _slot_order_sum(gb_ws).to(dtype))
    assert _counters_zero(x.device)

    wd = w.clone().requires_grad_()
    dz = grad.double() * (s.double() > 0)
    ref_w, = torch.autograd.grad(conv(x.double(), wd, stride=stride, padding=padding), wd, dz)
    tol = 1e-5 if dtype == torch.float32 else 5e-3
    assert _rel(gw, ref_w) < tol
    assert _rel(gb, dz.sum(dim=(0, 2, 3))) < tol

    with forced_tiles({"conv_wgrad": SPLIT3}):
        again = KC.conv_grad_weight(grad, s, x, w_shape[2:], [stride] * 2, [padding] * 2, transposed,
                                    "relu", 0.2, 1.0, None, True)
    assert torch.equal(again[0], gw) and torch.equal(again[1], gb)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_linear_wgrad_reduces_partials_in_one_launch(workspaces, dtype):
    rand = Rand(3)
    m, k, n = 90, 20, 18  # 6 K blocks of 16 positions: split 3
    x, grad, s = rand(m, k, dtype=dtype), rand(m, n, dtype=dtype), rand(m, n, dtype=dtype)
    with forced_tiles({"gemm_wgrad": SPLIT3}), recording_launches() as launches:
        gw, gb = KL.linear_grad_weight(grad, s, x, "lrelu", 0.2, 1.0, None, True)
    assert [launch.name for launch in launches] == ["_gemm_kernel"]
    ws, rowsum_ws = workspaces
    assert ws.shape[0] == 3 and rowsum_ws.shape[0] == 3
    _one_scratch_without_overlap(ws, rowsum_ws)
    assert not ws.isnan().any() and not rowsum_ws.isnan().any()
    assert torch.equal(gw, _slot_order_sum(ws).view(gw.shape).to(dtype))
    assert torch.equal(gb, _slot_order_sum(rowsum_ws).to(dtype))
    assert _counters_zero(x.device)

    dz = grad.double() * torch.where(s.double() > 0, 1.0, 0.2)
    tol = 1e-5 if dtype == torch.float32 else 5e-3
    assert _rel(gw, dz.t() @ x.double()) < tol
    assert _rel(gb, dz.sum(dim=0)) < tol


def test_tile_counters_grow_and_stay_zero():
    """The counter workspace is one cached zeroed buffer per device, grown on demand; a
    replaced buffer stays allocated (a captured CUDA graph still points at it)."""
    first = _arrival.tile_counters(10, "cpu")
    assert first.dtype == torch.int32 and first.numel() >= 10 and not first.any()
    assert _arrival.tile_counters(5, "cpu") is first
    first_alive = weakref.ref(first)
    bigger = _arrival.tile_counters(first.numel() + 1, "cpu")
    assert bigger.numel() > first.numel() and not bigger.any()
    assert _arrival.tile_counters(1, "cpu") is bigger
    del first
    gc.collect()
    assert first_alive() is not None


def test_scratch_is_one_buffer_per_device_and_dtype_grown_and_kept():
    """The batch-norm epilogues' partial sums live in one cached buffer per (device,
    dtype), grown on demand; a replaced buffer stays allocated (a captured CUDA graph
    still points at it); under test each use is poisoned with NaN like an output."""
    device = torch.device("cpu")
    first = _arrival.scratch(100, torch.float32, device)
    assert first.dtype == torch.float32 and first.numel() >= 100 and first.isnan().all()
    first.zero_()
    again = _arrival.scratch(50, torch.float32, device)
    assert again is first and again.isnan().all()  # poisoned again for this use
    assert _arrival.scratch(50, torch.float64, device) is not first
    first_alive = weakref.ref(first)
    bigger = _arrival.scratch(first.numel() + 1, torch.float32, device)
    assert bigger.numel() > first.numel() and _arrival.scratch(1, torch.float32, device) is bigger
    del first, again
    gc.collect()
    assert first_alive() is not None


def test_block_statistics_take_their_partials_from_the_scratch(monkeypatch):
    """conv_fwd_bn_stats allocates no partial-sum workspace of its own: its launch gets
    the scratch buffer, and the statistics it reduces there are the float64 ones."""
    seen = []
    original = _arrival.scratch

    def scratch(*args):
        seen.append(original(*args))
        return seen[-1]

    monkeypatch.setattr(KC, "scratch", scratch)
    rand = Rand(3)
    x = rand(2, 4, 8, 8, channels_last=True)
    w = rand(6, 4, 4, 4)
    with recording_launches() as launches:
        y, stats = KC.conv_fwd_bn_stats(x, w, None, [2, 2], [1, 1], [0, 0], False)
    assert len(seen) == 1 and launches[0].args[8] is seen[0]  # the `part` argument
    ref = F.conv2d(x.double(), w.double(), stride=2, padding=1)
    assert torch.allclose(stats[0].double(), ref.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    assert torch.allclose(stats[1].double(), ref.var(dim=(0, 2, 3), unbiased=False), rtol=1e-4, atol=1e-6)
