"""Linear + bias + activation: one strided GEMM Triton kernel for the forward and both
gradients, with the same three functions and signatures as fastgan.reference.linear
(linear_fwd, linear_grad_input, linear_grad_weight); x is a matrix [M, K].

Layout: every operand read through its strides, outputs contiguous. Knobs: the tile
per kind (kernels/_tiles.py), split-M slices of the weight gradient, the dot
precision; RANK_K_MAX, _k_padded and _fit_block_k for the shapes a tl.dot loop would
serve badly. The three products and the fused prologue / epilogue: docs/kernels.md,
"Linear kernel".
"""

from __future__ import annotations

import dataclasses

import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from fastgan.reference.activations import needs_preactivation, needs_saved

from . import _plans, _tiles
from ._arrival import arrived_last, release_counter, sum_slots, tile_counters
from ._plans import cdiv
from ._common import new_output
from ._launch import DirectLaunch
from ._gemm import (
    acc_type,
    bias_act_store,
    check_shape,
    check_tensors,
    clamp_arg,
    gradient_operand,
    grouped_tile,
    partials_buffer,
    partials_end,
    saved_or_none,
)


@triton.jit
def _gemm_kernel(
    a_ptr, s_ptr, b_ptr, bias_ptr, c_ptr, z_ptr, rowsum_ptr, out_ptr, rowsum_out_ptr, counter_ptr,
    M, N, K,
    sa_m, sa_k, ss_m, ss_k, sb_k, sb_n, sc_m, sc_n, sc_split, s_bias,
    alpha, gain, clamp, out_scale,
    ITERS_PER_SPLIT,
    ACT: tl.constexpr, HAS_CLAMP: tl.constexpr,
    PROLOGUE: tl.constexpr, EPILOGUE: tl.constexpr, HAS_BIAS: tl.constexpr, STORE_Z: tl.constexpr,
    ROW_SUM: tl.constexpr, SPLIT_SUM: tl.constexpr, RANK_K: tl.constexpr,
    ACC_DTYPE: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """C[m, n] = sum_k A[m, k] B[k, n] over slice `split` of k (grid axis 1).

    PROLOGUE: A is dL/dy (s its saved tensor, same indexing) times act'(s). EPILOGUE:
    bias + act + gain + clamp (and z with STORE_Z), else C = acc * out_scale. ROW_SUM:
    programs of column tile 0 also store the row sums of A (times out_scale) to
    rowsum[split, m]. C may be a float32 workspace slot (sc_split apart per slice).

    SPLIT_SUM (split over grid axis 1): C and rowsum are the fp32 partial slots, and the
    last program of an output tile to arrive (counter_ptr + tile) sums the slots into
    out (strided like a slot of C) and, for column tile 0, the row sums into
    rowsum_out, in slot order (kernels/_arrival.py)."""
    pid_m, pid_n = grouped_tile(tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)
    split = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < M
    col_ok = cols < N
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    rsum = tl.zeros((BLOCK_M,), dtype=ACC_DTYPE)
    # RANK_K > 0 (K == RANK_K <= RANK_K_MAX, one slice): a sum of RANK_K outer products
    # on the CUDA cores, no tl.dot (see RANK_K_MAX).
    if RANK_K > 0:
        for kk in tl.static_range(RANK_K):
            if PROLOGUE or ROW_SUM:
                a_col = gradient_operand(a_ptr, s_ptr, rows * sa_m + kk * sa_k, rows * ss_m + kk * ss_k, row_ok,
                                         alpha, gain, clamp, ACT, HAS_CLAMP, PROLOGUE, ACC_DTYPE)
                if ROW_SUM:
                    rsum += a_col
            else:
                a_col = tl.load(a_ptr + rows * sa_m + kk * sa_k, mask=row_ok, other=0.0).to(ACC_DTYPE)
            b_row = tl.load(b_ptr + kk * sb_k + cols * sb_n, mask=col_ok, other=0.0).to(ACC_DTYPE)
            acc += a_col[:, None] * b_row[None, :]
    else:
        for it in range(0, ITERS_PER_SPLIT):
            k = (split * ITERS_PER_SPLIT + it) * BLOCK_K + ks
            k_ok = k < K
            a_mask = row_ok[:, None] & k_ok[None, :]
            a_off = rows[:, None] * sa_m + k[None, :] * sa_k
            if PROLOGUE or ROW_SUM:
                a = gradient_operand(a_ptr, s_ptr, a_off, rows[:, None] * ss_m + k[None, :] * ss_k, a_mask,
                                     alpha, gain, clamp, ACT, HAS_CLAMP, PROLOGUE, ACC_DTYPE)
                if ROW_SUM:
                    rsum += tl.sum(a, axis=1)
                a = a.to(b_ptr.dtype.element_ty)
            else:
                a = tl.load(a_ptr + a_off, mask=a_mask, other=0.0)
            b = tl.load(b_ptr + k[:, None] * sb_k + cols[None, :] * sb_n, mask=k_ok[:, None] & col_ok[None, :],
                        other=0.0)
            acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION, out_dtype=ACC_DTYPE)

    c_off = split * sc_split + rows[:, None] * sc_m + cols[None, :] * sc_n
    bias_act_store(acc, bias_ptr, s_bias, cols, col_ok, c_ptr, z_ptr, c_off, row_ok[:, None] & col_ok[None, :],
                   alpha, gain, clamp, out_scale, ACT, HAS_CLAMP, EPILOGUE, HAS_BIAS, STORE_Z)
    if ROW_SUM:
        rsum = rsum * out_scale
        tl.store(rowsum_ptr + split * M + rows, rsum.to(rowsum_ptr.dtype.element_ty),
                 mask=row_ok & (rows * 0 + pid_n == 0))
    if SPLIT_SUM:
        splits = tl.num_programs(1)
        tile = tl.program_id(0)
        if arrived_last(counter_ptr + tile, splits):
            offs = rows[:, None] * sc_m + cols[None, :] * sc_n
            mask = row_ok[:, None] & col_ok[None, :]
            total = sum_slots(c_ptr, offs, mask, sc_split, splits)
            tl.store(out_ptr + offs, total.to(out_ptr.dtype.element_ty), mask=mask)
            if ROW_SUM:
                row_mask = row_ok & (rows * 0 + pid_n == 0)
                total_rows = sum_slots(rowsum_ptr, rows, row_mask, M, splits)
                tl.store(rowsum_out_ptr + rows, total_rows.to(rowsum_out_ptr.dtype.element_ty), mask=row_mask)
            release_counter(counter_ptr + tile)


def _check_2d(op, **tensors):
    for name, t in tensors.items():
        if t is not None and t.dim() != 2:
            raise ValueError(f"{op}: {name} must be 2-D, got shape {tuple(t.shape)}")


# A reduction of at most this many terms runs as RANK_K outer products on the CUDA
# cores instead of a tl.dot: with K <= 16 each output element takes at most 16
# multiply-adds, below what the CUDA cores do in the time its 2-4 bytes take to store
# (an H100: ~34 T FMA/s against 3.35 TB/s, about 10 FMA per byte), so such a GEMM is
# bound by its output whatever unit multiplies; as a tl.dot it would pad K to one
# 16-wide block, load each operand tile once (no loop for cp.async to pipeline) and
# need K-padded operands. Reached by the 2-feature toy input, 1- and 2-output layers'
# input gradients and weight gradients of batches of at most 16 rows.
RANK_K_MAX = 16
# Triton proves 16-byte alignment (vector loads, cp.async) from pointers aligned to 16
# bytes and integer arguments divisible by 16: a row stride or a masked contiguous
# length that is not loses it for the whole operand.
ALIGN = 16


def _loads_aligned(rows: int, k: int, stride_rows: int, stride_k: int) -> bool:
    """Whether the tiles of a GEMM operand [rows, k] read through these strides load as
    16-byte vectors, which cp.async needs: contiguous along one axis whose length and
    whose other stride Triton sees divisible by 16."""
    if stride_k == 1 and k % ALIGN == 0 and stride_rows % ALIGN == 0:
        return True
    return stride_rows == 1 and rows % ALIGN == 0 and stride_k % ALIGN == 0


def _k_padded(m: int, n: int, k: int, strides_a, strides_b) -> int | None:
    """The padded reduction length when the operands must be copied (None: read them in
    place). A K loop in which neither A nor B loads aligned has nothing cp.async can copy
    (a 40-attribute embedding: rows of 80 bytes); both are then copied K-contiguous into
    zeroed buffers of K rounded up to 16 (the zeros add nothing to the sums), as
    _pixel_padded in kernels/conv.py does for 3-channel pixels. One aligned operand is
    enough for a pipelined loop and avoids the copies (a 100-wide latent beside an
    aligned weight is read in place)."""
    if k <= RANK_K_MAX:
        return None
    if _loads_aligned(m, k, *strides_a) or _loads_aligned(n, k, strides_b[1], strides_b[0]):
        return None
    return cdiv(k, ALIGN) * ALIGN


def _fit_block_k(tile, k: int, device):
    """tile with BLOCK_K halved (down to 16) until the K loop has two blocks: a compiled
    loop of one iteration loads each tile once and waits for it, with nothing for
    cp.async to overlap (the weight gradient of a 64-row batch at BLOCK_K 64). The
    interpreter keeps the table's tile (fewest iterations is what it runs fastest)."""
    if _tiles._interpreter_tiles(device) or k <= RANK_K_MAX:
        return tile
    block_k = tile.BLOCK_K
    while block_k > _tiles.MIN_DOT_DIM and cdiv(k, block_k) < 2:
        block_k //= 2
    return tile if block_k == tile.BLOCK_K else dataclasses.replace(tile, BLOCK_K=block_k)


def _k_contiguous(t, rows: int, k: int, k_padded: int, strides):
    """The operand [rows, k] that t's strides describe, copied into a zeroed row-major
    [rows, k_padded] buffer (16-byte aligned rows)."""
    out = t.new_zeros((rows, k_padded))
    out[:, :k] = t.as_strided((rows, k), strides)
    return out


def _gemm_args(s, b, bias, z, rowsum, m, n, k, strides_a, strides_s, strides_b, strides_c,
               act, alpha, gain, clamp, prologue, epilogue, out_scale, split=1, iters_per_split=None,
               split_stride=0, tile=None, precision_family="linear"):
    """(grid, scalar arguments, constexpr arguments, operand copies, launch) of a
    _gemm_kernel launch: all but the tensors, which _launch_gemm passes in the kernel's
    order (after copying A, S and B K-padded when the copies are not None) to `launch`
    (a DirectLaunch: kept with a cached plan, later launches skip Triton's binding)."""
    grid = (cdiv(m, tile.BLOCK_M) * cdiv(n, tile.BLOCK_N), split)
    rank_k = k if k <= RANK_K_MAX else 0
    copies = None
    k_padded = _k_padded(m, n, k, strides_a, strides_b)
    if k_padded is not None:
        copies = (m, n, k, k_padded, strides_a, strides_s if s is not None else None, strides_b)
        k, strides_a, strides_b = k_padded, (k_padded, 1), (1, k_padded)
        strides_s = (k_padded, 1) if s is not None else strides_s
    if iters_per_split is None:
        tile = _fit_block_k(tile, k, b.device)
    scalars = (
        m, n, k, *strides_a, *strides_s, *strides_b, *strides_c, split_stride,
        bias.stride(0) if bias is not None else 0,
        float(alpha), float(gain), clamp_arg(clamp, act, s), float(out_scale),
        iters_per_split if iters_per_split is not None else cdiv(k, tile.BLOCK_K),
    )
    constexprs = dict(
        ACT=act, HAS_CLAMP=clamp is not None,
        PROLOGUE=prologue, EPILOGUE=epilogue, HAS_BIAS=bias is not None, STORE_Z=z is not None,
        ROW_SUM=rowsum is not None, SPLIT_SUM=split > 1, RANK_K=rank_k,
        ACC_DTYPE=acc_type(b.dtype), DOT_PRECISION=_tiles.dot_precision(b.dtype, precision_family),
        BLOCK_M=tile.BLOCK_M, BLOCK_N=tile.BLOCK_N, BLOCK_K=tile.BLOCK_K, GROUP_M=tile.GROUP_M,
        **tile.launch_options(),
    )
    return grid, scalars, constexprs, copies, DirectLaunch(_gemm_kernel, grid)


def _launch_gemm(args, a, s, b, bias, c, z, rowsum, split_out=None, rowsum_out=None):
    """Launch with the tensors. split > 1: c and rowsum are partial slots, reduced in the
    launch into split_out and rowsum_out (counters: kernels/_arrival.py)."""
    grid, scalars, constexprs, copies, gemm = args
    if copies is not None:
        m, n, k, k_padded, strides_a, strides_s, (sb_k, sb_n) = copies
        a = _k_contiguous(a, m, k, k_padded, strides_a)
        s = _k_contiguous(s, m, k, k_padded, strides_s) if strides_s is not None else s
        b = _k_contiguous(b, n, k, k_padded, (sb_n, sb_k))
    split = grid[1]
    counters = tile_counters(grid[0], c.device) if split > 1 else c
    try:
        gemm(a, s if s is not None else a, b, bias if bias is not None else c, c,
             z if z is not None else c, rowsum if rowsum is not None else c,
             split_out if split > 1 else c, rowsum_out if rowsum_out is not None else c, counters,
             *scalars, **constexprs)
    except OutOfResources as error:
        raise _tiles.resource_error("GEMM kernel", constexprs, c.device, error) from error


def _launch(a, s, b, bias, c, z, rowsum, m, n, k, strides_a, strides_s, strides_b, strides_c,
            act, alpha, gain, clamp, prologue, epilogue, out_scale, split=1, iters_per_split=None,
            split_stride=0, tile=None, split_out=None, rowsum_out=None, precision_family="linear"):
    args = _gemm_args(s, b, bias, z, rowsum, m, n, k, strides_a, strides_s, strides_b, strides_c, act, alpha, gain,
                      clamp, prologue, epilogue, out_scale, split, iters_per_split, split_stride, tile,
                      precision_family)
    _launch_gemm(args, a, s, b, bias, c, z, rowsum, split_out, rowsum_out)


def _plan_fwd(x, weight, bias, act, alpha, gain, clamp):
    """Checks and launch arguments of linear_fwd: ((m, n), store z, gemm arguments)."""
    op = "linear_fwd"
    check_tensors(op, x=x, weight=weight, bias=bias)
    _check_2d(op, x=x, weight=weight)
    m, kk = x.shape
    n = weight.shape[0]
    check_shape(op, "weight", weight, (n, kk))
    if bias is not None:
        check_shape(op, "bias", bias, (n,))
    store_z = needs_preactivation(act)
    tile = _tiles.pick("gemm", x.device, x.dtype, m, n, kk)
    args = _gemm_args(None, weight, bias, x if store_z else None, None, m, n, kk, x.stride(), (0, 0),
                      (weight.stride(1), weight.stride(0)), (n, 1), act, alpha, gain, clamp,
                      prologue=False, epilogue=True, out_scale=1.0, tile=tile)
    return (m, n), store_z, args


def linear_fwd(x, weight, bias, act, alpha, gain, clamp):
    """(y, z) for x [M, K], weight [N, K]: y = clamp(act(x @ w^T + b) * gain); z the
    pre-activation for silu, else an empty tensor."""
    key = ("linear_fwd", _plans.meta(x), _plans.meta(weight), _plans.meta(bias), act, alpha, gain, clamp)
    plan = _plans.get(key) or _plans.put(key, _plan_fwd(x, weight, bias, act, alpha, gain, clamp))
    shape, store_z, args = plan
    y = new_output(shape, x.dtype, x.device)
    z = new_output(shape, x.dtype, x.device) if store_z else None
    _launch_gemm(args, x, None, weight, bias, y, z, None)
    return y, (z if z is not None else x.new_empty(0))


def _plan_grad_input(grad, s, weight, act, alpha, gain, clamp):
    """Checks and launch arguments of linear_grad_input: ((m, k), uses s, arguments)."""
    op = "linear_grad_input"
    s = saved_or_none(op, s, grad, act, clamp)
    check_tensors(op, grad=grad, s=s, weight=weight)
    _check_2d(op, grad=grad, s=s, weight=weight)
    m, n = grad.shape
    if weight.shape[0] != n:
        raise ValueError(f"{op}: grad has {n} columns, weight {tuple(weight.shape)} has {weight.shape[0]} rows")
    kk = weight.shape[1]
    tile = _tiles.pick("gemm", grad.device, grad.dtype, m, kk, n)
    prologue = s is not None
    args = _gemm_args(s, weight, None, None, None, m, kk, n, grad.stride(),
                      s.stride() if prologue else (0, 0), weight.stride(), (kk, 1), act, alpha, gain, clamp,
                      prologue=prologue, epilogue=False, out_scale=1.0 if prologue else gain, tile=tile)
    return (m, kk), prologue, args


def linear_grad_input(grad, s, weight, act, alpha, gain, clamp):
    """dL/dx = (dL/dy * act'(s)) @ w, [M, K]."""
    key = ("linear_grad_input", _plans.meta(grad), _plans.meta(s), _plans.meta(weight), act, alpha, gain, clamp)
    plan = _plans.get(key) or _plans.put(key, _plan_grad_input(grad, s, weight, act, alpha, gain, clamp))
    shape, prologue, args = plan
    gx = new_output(shape, grad.dtype, grad.device)
    _launch_gemm(args, grad, s if prologue else None, weight, None, gx, None, None)
    return gx


def _check_grad_weight(op, grad, s, x, act, alpha, gain, clamp):
    s = saved_or_none(op, s, grad, act, clamp)
    check_tensors(op, grad=grad, s=s, x=x)
    _check_2d(op, grad=grad, s=s, x=x)
    if x.shape[0] != grad.shape[0]:
        raise ValueError(f"{op}: grad has {grad.shape[0]} rows, x has {x.shape[0]}")
    return True


def linear_grad_weight(grad, s, x, act, alpha, gain, clamp, need_bias):
    """(dL/dw [N, K], dL/db [N] or empty) = (dZ^T @ x, column sums of dZ)."""
    op = "linear_grad_weight"
    key = (op, _plans.meta(grad), _plans.meta(s), _plans.meta(x), act, alpha, gain, clamp)
    _plans.get(key) or _plans.put(key, _check_grad_weight(op, grad, s, x, act, alpha, gain, clamp))
    s = s if needs_saved(act, clamp) else None
    m, n = grad.shape
    kk = x.shape[1]
    gw = new_output((n, kk), x.dtype, x.device)
    gb = new_output((n,), grad.dtype, grad.device) if need_bias else None
    tile = _tiles.pick("gemm_wgrad", x.device, x.dtype, n, kk, m)
    # The K loop as _gemm_args will lay it out (copied operands, BLOCK_K), for the split.
    strides_a = (grad.stride(1), grad.stride(0))
    k_loop = _k_padded(n, kk, m, strides_a, x.stride()) or m
    tile = _fit_block_k(tile, k_loop, x.device)
    k_iters = cdiv(k_loop, tile.BLOCK_K)
    tiles = cdiv(n, tile.BLOCK_M) * cdiv(kk, tile.BLOCK_N)
    split = _tiles.split_count(tile, x.device, tiles, k_iters)
    iters_per_split = cdiv(k_iters, split)
    split = cdiv(k_iters, iters_per_split)  # no empty slice
    out = partials_buffer(split, gw.numel(), x.dtype, x.device) if split > 1 else gw
    rowsum = None
    if need_bias:
        # After the weight's partials in the scratch (the same accumulator dtype: x and
        # grad share one dtype, check_tensors).
        rowsum = partials_buffer(split, n, grad.dtype, grad.device, partials_end(split, gw.numel())) \
            if split > 1 else gb
    prologue = s is not None
    # A = dZ^T: grad's (and s's) strides swapped.
    _launch(grad, s, x, None, out, None, rowsum, n, kk, m, strides_a,
            (s.stride(1), s.stride(0)) if prologue else (0, 0), x.stride(), (kk, 1),
            act, alpha, gain, clamp, prologue=prologue, epilogue=False,
            out_scale=1.0 if prologue else gain, split=split,
            iters_per_split=iters_per_split, split_stride=gw.numel() if split > 1 else 0, tile=tile,
            split_out=gw, rowsum_out=gb)
    return gw, (gb if gb is not None else grad.new_empty(0))
