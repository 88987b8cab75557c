"""Fused batch norm + activation, forward and backward. Same functions, signatures and
outputs as fastgan.reference.batch_norm (bn_fwd, bn_backward).

Layout: x [N, C, H, W] read as N*H*W rows of C channels, in tiles of [BLOCK_R rows,
BLOCK_C channels], "rows" (channels_last) or "planes" (NCHW); other strides are copied
to NCHW. Knobs: BatchNormConfig (tile size, programs, when one program holds a whole
channel block). Shifted, pairwise-merged statistics, the launches of each path and
why the sums are deterministic: docs/kernels.md, "Batch norm kernels".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from fastgan._dtypes import SUPPORTED, SUPPORTED_NAMES
from fastgan.reference.activations import needs_preactivation, needs_saved

from . import activation as KA
from ._arrival import arrived_last, release_counter, tile_counters
from ._common import (
    LaunchConfigs, accumulator_dtype, accumulator_type, new_output, new_output_like, new_strided, output_spec,
    split_float32,
)
from . import _plans
from ._launch import DirectLaunch
from ._plans import cdiv

ROWS, PLANES = "rows", "planes"


@dataclass(frozen=True)
class BatchNormConfig:
    tile: int  # elements of a [BLOCK_R, BLOCK_C] tile
    max_block_c: int  # channels of a tile in the rows layout
    max_block_r: int  # rows (hw) of a tile in the planes layout
    target_programs: int  # row programs x channel blocks the split path aims at
    fused_max_tiles: int  # channel blocks of at most this many tiles run in one program
    # Rows layout with at most this many rows (N*H*W): one program per channel block of
    # fused_block_c channels, however many tiles that is (0: never).
    fused_max_rows: int
    fused_block_c: int
    finalize_block_p: int  # partials merged per step by a channel block's last program
    finalize_block_c: int  # channels it merges at a time
    num_warps: int


# Untuned (no GPU in the task that wrote them).
# fused_max_rows: a DCGAN 4 x 4 layer at batch 256 (4096 rows, 512 channels) runs as
# one launch of 64 programs of 8 channels instead of two launches of 512 programs.
GPU_CONFIG = BatchNormConfig(
    tile=4096, max_block_c=64, max_block_r=1024, target_programs=1024, fused_max_tiles=4,
    fused_max_rows=4096, fused_block_c=8,
    finalize_block_p=64, finalize_block_c=32, num_warps=8,
)
# The interpreter runs programs one after another: few large tiles.
INTERPRETER_CONFIG = BatchNormConfig(
    tile=8192, max_block_c=64, max_block_r=1024, target_programs=8, fused_max_tiles=2,
    fused_max_rows=0, fused_block_c=8,
    finalize_block_p=64, finalize_block_c=64, num_warps=4,
)
_CONFIGS = LaunchConfigs(GPU_CONFIG, INTERPRETER_CONFIG)
config = _CONFIGS.current
configured = _CONFIGS.configured  # tests replace fields to reach every path


# ----------------------------------------------------------------------------- helpers


@triton.jit
def _tile(t, chans, C, HW, M, hw_blocks, LAYOUT: tl.constexpr, BLOCK_R: tl.constexpr):
    """Offsets and mask of tile t ([BLOCK_R, BLOCK_C]) for channels `chans`, and how
    many of its rows are valid (at least one for every tile index < num_tiles)."""
    rows = tl.arange(0, BLOCK_R)
    if LAYOUT == "rows":
        m = tl.cast(t, tl.int64) * BLOCK_R + rows
        row_ok = m < M
        row_off = m * C
        chan_off = chans
    else:
        hw = (t % hw_blocks) * BLOCK_R + rows
        row_ok = hw < HW
        row_off = tl.cast(t // hw_blocks, tl.int64) * C * HW + hw
        chan_off = chans * HW
    offs = row_off[:, None] + chan_off[None, :]
    mask = row_ok[:, None] & (chans < C)[None, :]
    return offs, mask, tl.sum(row_ok.to(tl.int32), axis=0)


@triton.jit
def _pivot(x_ptr, chans, C, HW, LAYOUT: tl.constexpr, ACC: tl.constexpr):
    """x[0, c, 0, 0] for each channel: the shift of the statistics."""
    if LAYOUT == "rows":
        off = chans
    else:
        off = chans * HW
    return tl.load(x_ptr + off, mask=chans < C, other=0.0).to(ACC)


@triton.jit
def _rstd(var, eps_hi, eps_lo, FP64: tl.constexpr):
    v = (var + eps_hi) + eps_lo
    if FP64:
        r = 1.0 / tl.sqrt(v)
    else:
        r = 1.0 / tl.sqrt_rn(v)  # correctly rounded: tl.sqrt may approximate on GPU
    return r


@triton.jit
def _load_channels(ptr, chans, C, ACC: tl.constexpr):
    return tl.load(ptr + chans, mask=chans < C, other=0.0).to(ACC)


@triton.jit
def _channel_stats(
    x_ptr, pivot, first, last, chans, C, HW, M, hw_blocks,
    LAYOUT: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """(count, mean, M2) of d = x - pivot per channel over tiles [first, last): each
    tile's own mean and M2 from registers, merged in tile order (Chan et al.)."""
    count = tl.zeros([BLOCK_C], ACC)
    mean = tl.zeros([BLOCK_C], ACC)
    m2 = tl.zeros([BLOCK_C], ACC)
    for t in range(first, last):
        offs, mask, valid = _tile(t, chans, C, HW, M, hw_blocks, LAYOUT, BLOCK_R)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
        d = tl.where(mask, x - pivot[None, :], 0.0)
        n_t = valid.to(ACC)
        mean_t = tl.sum(d, axis=0) / n_t
        dev = tl.where(mask, d - mean_t[None, :], 0.0)
        m2_t = tl.sum(dev * dev, axis=0)
        total = count + n_t
        frac = n_t / total
        delta = mean_t - mean
        mean = mean + delta * frac
        m2 = m2 + m2_t + delta * delta * (count * frac)
        count = total
    return count, mean, m2


@triton.jit
def _grad_z(g_ptr, s_ptr, offs, mask, alpha, ACT: tl.constexpr, ACC: tl.constexpr):
    """dL/dz = grad * act'(s), 0 outside the mask."""
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(ACC)
    if not KA.saves_nothing(ACT):
        s = tl.load(s_ptr + offs, mask=mask, other=0.0).to(ACC)
        g = g * KA.act_derivative(s, ACT, alpha, 1.0, 0.0, False)
    return tl.where(mask, g, 0.0)


@triton.jit
def _grad_sums(
    g_ptr, s_ptr, x_ptr, gx_ptr, mean, scale, alpha, first, last, chans, C, HW, M, hw_blocks,
    ACT: tl.constexpr, STORE_GX: tl.constexpr, LAYOUT: tl.constexpr, ACC: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """(sum gz, sum gz * (x - mean)) per channel over tiles [first, last), in tile
    order; with STORE_GX (eval, where gx does not depend on them) also gx = gz*scale."""
    sum_gz = tl.zeros([BLOCK_C], ACC)
    sum_gzx = tl.zeros([BLOCK_C], ACC)
    for t in range(first, last):
        offs, mask, valid = _tile(t, chans, C, HW, M, hw_blocks, LAYOUT, BLOCK_R)
        gz = _grad_z(g_ptr, s_ptr, offs, mask, alpha, ACT, ACC)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
        sum_gz += tl.sum(gz, axis=0)
        sum_gzx += tl.sum(gz * (x - mean[None, :]), axis=0)
        if STORE_GX:
            tl.store(gx_ptr + offs, (gz * scale[None, :]).to(gx_ptr.dtype.element_ty), mask=mask)
    return sum_gz, sum_gzx


@triton.jit
def _store_affine_grads(gw_ptr, gb_ptr, sum_gz, sum_gzx, rstd, chans, C):
    cmask = chans < C
    tl.store(gw_ptr + chans, (sum_gzx * rstd).to(gw_ptr.dtype.element_ty), mask=cmask)
    tl.store(gb_ptr + chans, sum_gz.to(gb_ptr.dtype.element_ty), mask=cmask)


# ----------------------------------------------------------------------------- forward


@triton.jit
def merge_partials(part_count_ptr, part_mean_ptr, part_m2_ptr, parts, cols, col_ok, C, M,
                   ACC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """(mean, M2 / M) of columns `cols` from `parts` rows of [parts, C] (count, mean, M2)
    partials: mean = sum(n_i mean_i) / M, then M2 = sum(M2_i + n_i (mean_i - mean)^2),
    each in a fixed order (BLOCK_P lanes of partials, then a fixed tree). Partials written
    by other programs of this launch are read through L2 (kernels/_arrival.py)."""
    lanes = tl.arange(0, BLOCK_P)
    acc = tl.zeros([BLOCK_P, BLOCK_C], ACC)
    for start in range(0, parts, BLOCK_P):
        p = start + lanes
        offs = p[:, None] * C + cols[None, :]
        mask = (p < parts)[:, None] & col_ok[None, :]
        n_i = tl.load(part_count_ptr + offs, mask=mask, other=0.0, cache_modifier=".cg")
        mean_i = tl.load(part_mean_ptr + offs, mask=mask, other=0.0, cache_modifier=".cg")
        acc += n_i * mean_i
    mean = tl.sum(acc, axis=0) / M
    acc = tl.zeros([BLOCK_P, BLOCK_C], ACC)
    for start in range(0, parts, BLOCK_P):
        p = start + lanes
        offs = p[:, None] * C + cols[None, :]
        mask = (p < parts)[:, None] & col_ok[None, :]
        n_i = tl.load(part_count_ptr + offs, mask=mask, other=0.0, cache_modifier=".cg")
        mean_i = tl.load(part_mean_ptr + offs, mask=mask, other=0.0, cache_modifier=".cg")
        m2_i = tl.load(part_m2_ptr + offs, mask=mask, other=0.0, cache_modifier=".cg")
        dev = mean_i - mean[None, :]
        acc += m2_i + n_i * dev * dev
    return mean, tl.sum(acc, axis=0) / M


@triton.jit
def _finalize_stats(
    x_ptr, part_count_ptr, part_mean_ptr, part_m2_ptr, mean_ptr, var_ptr, shift_ptr, chans, C, HW, M, row_programs,
    LAYOUT: tl.constexpr, ACC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Merges the partials of channels `chans` (BLOCK_C of them, merge_partials) and
    writes the batch mean (pivot + mean_d), the biased variance and mean_d (for the
    normalize pass)."""
    cmask = chans < C
    mean_d, var = merge_partials(part_count_ptr, part_mean_ptr, part_m2_ptr, row_programs, chans, cmask, C, M,
                                 ACC, BLOCK_P, BLOCK_C)
    pivot = _pivot(x_ptr, chans, C, HW, LAYOUT, ACC)
    tl.store(mean_ptr + chans, pivot + mean_d, mask=cmask)
    tl.store(var_ptr + chans, var, mask=cmask)
    tl.store(shift_ptr + chans, mean_d, mask=cmask)


@triton.jit
def _bn_stats_kernel(
    x_ptr, part_count_ptr, part_mean_ptr, part_m2_ptr, mean_ptr, var_ptr, shift_ptr, counter_ptr,
    C, HW, M, hw_blocks, num_tiles, tiles_per_program,
    LAYOUT: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr, FINALIZE_C: tl.constexpr,
):
    """Partial (count, mean, M2) of x - pivot: program (r, cb) covers the tiles of row
    program r for channel block cb, and writes row r of the [row programs, C] partials.
    The last program of channel block cb to arrive (counter cb) merges the partials of
    its channels, FINALIZE_C at a time (_finalize_stats), and writes the statistics."""
    r = tl.program_id(0)
    cb = tl.program_id(1)
    chans = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    pivot = _pivot(x_ptr, chans, C, HW, LAYOUT, ACC)
    first = r * tiles_per_program
    last = tl.minimum(first + tiles_per_program, num_tiles)
    count, mean, m2 = _channel_stats(x_ptr, pivot, first, last, chans, C, HW, M, hw_blocks, LAYOUT, ACC, BLOCK_R, BLOCK_C)
    out = r * C + chans
    cmask = chans < C
    tl.store(part_count_ptr + out, count, mask=cmask)
    tl.store(part_mean_ptr + out, mean, mask=cmask)
    tl.store(part_m2_ptr + out, m2, mask=cmask)
    row_programs = tl.num_programs(0)
    if arrived_last(counter_ptr + cb, row_programs):
        for sub in tl.static_range(0, BLOCK_C, FINALIZE_C):
            _finalize_stats(
                x_ptr, part_count_ptr, part_mean_ptr, part_m2_ptr, mean_ptr, var_ptr, shift_ptr,
                cb * BLOCK_C + sub + tl.arange(0, FINALIZE_C), C, HW, M, row_programs,
                LAYOUT, ACC, BLOCK_P, FINALIZE_C,
            )
        release_counter(counter_ptr + cb)


@triton.jit
def _update_running(run_mean_ptr, run_var_ptr, mean, var, chans, cmask, momentum, keep, var_factor):
    """running = running * (1 - momentum) + momentum * batch value, for the mean and
    the unbiased variance (var * var_factor, var_factor = M / (M - 1)), float32, in the
    operations and roundings of PyTorch's running_mean.mul_(1 - momentum).add_(mean,
    alpha=momentum): a float32 product, then a fused multiply-add (ATen's vectorized
    CPU add with alpha is an fmadd; nvcc contracts CUDA's a + alpha * b by default)."""
    run_mean = tl.load(run_mean_ptr + chans, mask=cmask, other=0.0)
    tl.store(run_mean_ptr + chans, tl.fma(mean, momentum, run_mean * keep), mask=cmask)
    run_var = tl.load(run_var_ptr + chans, mask=cmask, other=0.0)
    tl.store(run_var_ptr + chans, tl.fma(var * var_factor, momentum, run_var * keep), mask=cmask)


@triton.jit
def _bn_normalize_kernel(
    x_ptr, y_ptr, z_ptr, w_ptr, b_ptr, stat_mean_ptr, stat_var_ptr, shift_ptr, mean_out_ptr, var_out_ptr,
    count_ptr, eps_hi, eps_lo, alpha, C, HW, M, hw_blocks, num_tiles, tiles_per_program,
    STATS: tl.constexpr, ACT: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
    STORE_Z: tl.constexpr, LAYOUT: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
    momentum=0.0, keep=1.0, var_factor=1.0, UPDATE_RUNNING: tl.constexpr = False,
    COUNT_BATCH: tl.constexpr = False,
):
    """y = act(((x - center) - shift) * weight * rstd + bias), and z (the argument of
    act) for silu. STATS: 'running' (eval: center = running mean, shift = 0, running
    var), 'batch' (center = pivot, shift and var from the finalize kernel) or 'own'
    (this program holds every tile of its channels: it computes and writes the batch
    statistics itself first). UPDATE_RUNNING (float32 running and batch statistics):
    the running statistics are also updated as nn.BatchNorm does (_update_running),
    for STATS 'batch' by row program 0 at mean_out_ptr, var_out_ptr; for STATS 'own'
    (one program per channel block) at stat_mean_ptr, stat_var_ptr, which that mode
    does not read otherwise. COUNT_BATCH (with UPDATE_RUNNING): program (0, 0) also adds
    1 to the int64 num_batches_tracked at count_ptr, which nothing reads in the launch
    (momentum not None): nn.BatchNorm's count without a launch of its own."""
    r = tl.program_id(0)
    if COUNT_BATCH:
        if (r == 0) & (tl.program_id(1) == 0):
            tl.store(count_ptr, tl.load(count_ptr) + 1)
    chans = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = chans < C
    if STATS == "running":
        center = _load_channels(stat_mean_ptr, chans, C, ACC)
        shift = tl.zeros([BLOCK_C], ACC)
        var = _load_channels(stat_var_ptr, chans, C, ACC)
    elif STATS == "batch":
        center = _pivot(x_ptr, chans, C, HW, LAYOUT, ACC)
        shift = _load_channels(shift_ptr, chans, C, ACC)
        var = _load_channels(stat_var_ptr, chans, C, ACC)
        if UPDATE_RUNNING:
            if r == 0:
                _update_running(mean_out_ptr, var_out_ptr, tl.load(stat_mean_ptr + chans, mask=cmask, other=0.0),
                                var, chans, cmask, momentum, keep, var_factor)
    else:
        center = _pivot(x_ptr, chans, C, HW, LAYOUT, ACC)
        count, shift, m2 = _channel_stats(
            x_ptr, center, 0, num_tiles, chans, C, HW, M, hw_blocks, LAYOUT, ACC, BLOCK_R, BLOCK_C
        )
        var = m2 / M
        mean = center + shift
        tl.store(mean_out_ptr + chans, mean, mask=cmask)
        tl.store(var_out_ptr + chans, var, mask=cmask)
        if UPDATE_RUNNING:
            _update_running(stat_mean_ptr, stat_var_ptr, mean, var, chans, cmask, momentum, keep, var_factor)
    a = _rstd(var, eps_hi, eps_lo, ACC == tl.float64)
    if HAS_WEIGHT:
        a = a * _load_channels(w_ptr, chans, C, ACC)
    if HAS_BIAS:
        b = _load_channels(b_ptr, chans, C, ACC)
    else:
        b = tl.zeros([BLOCK_C], ACC)
    first = r * tiles_per_program
    last = tl.minimum(first + tiles_per_program, num_tiles)
    for t in range(first, last):
        offs, mask, valid = _tile(t, chans, C, HW, M, hw_blocks, LAYOUT, BLOCK_R)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
        z = ((x - center[None, :]) - shift[None, :]) * a[None, :] + b[None, :]
        y = KA.apply_act(z, ACT, alpha, 1.0, 0.0, False)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)
        if STORE_Z:
            tl.store(z_ptr + offs, z.to(z_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------- backward


@triton.jit
def _bn_grad_sums_kernel(
    g_ptr, s_ptr, x_ptr, gx_ptr, w_ptr, mean_ptr, var_ptr, part_gz_ptr, part_gzx_ptr, gw_ptr, gb_ptr,
    coef_ptr, counter_ptr,
    eps_hi, eps_lo, alpha, C, HW, M, hw_blocks, num_tiles, tiles_per_program,
    ACT: tl.constexpr, STORE_GX: tl.constexpr, FINAL: tl.constexpr, HAS_WEIGHT: tl.constexpr,
    NEED_AFFINE: tl.constexpr, TRAINING: tl.constexpr,
    LAYOUT: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr, FINALIZE_C: tl.constexpr, FOLD: tl.constexpr = False,
):
    """Per-channel sums of gz and gz * (x - mean) over the tiles of row program r:
    written as row r of the partials, or (FINAL: one row program holds every tile) as
    the weight and bias gradients. STORE_GX (eval) also writes gx. Without FINAL, the
    last program of channel block cb to arrive (counter cb) sums the partials of its
    channels, FINALIZE_C at a time (_finalize_grad_sums). FOLD (training): coef is the
    [4, C] coefficients of a conv -> batch norm block's folded input gradient
    (kernels/_conv_bn.py): mean gz, rstd^2 sum gz (x - mean) / M, scale, mean."""
    r = tl.program_id(0)
    cb = tl.program_id(1)
    chans = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = chans < C
    mean = _load_channels(mean_ptr, chans, C, ACC)
    rstd = _rstd(_load_channels(var_ptr, chans, C, ACC), eps_hi, eps_lo, ACC == tl.float64)
    scale = rstd
    if HAS_WEIGHT:
        scale = rstd * _load_channels(w_ptr, chans, C, ACC)
    first = r * tiles_per_program
    last = tl.minimum(first + tiles_per_program, num_tiles)
    sum_gz, sum_gzx = _grad_sums(
        g_ptr, s_ptr, x_ptr, gx_ptr, mean, scale, alpha, first, last, chans, C, HW, M, hw_blocks,
        ACT, STORE_GX, LAYOUT, ACC, BLOCK_R, BLOCK_C,
    )
    if FINAL:
        _store_affine_grads(gw_ptr, gb_ptr, sum_gz, sum_gzx, rstd, chans, C)
        if FOLD:
            _store_fold_coefficients(coef_ptr, sum_gz / M, sum_gzx * rstd * rstd / M, scale, mean, chans, C)
    else:
        tl.store(part_gz_ptr + r * C + chans, sum_gz, mask=cmask)
        tl.store(part_gzx_ptr + r * C + chans, sum_gzx, mask=cmask)
        row_programs = tl.num_programs(0)
        if arrived_last(counter_ptr + cb, row_programs):
            for sub in tl.static_range(0, BLOCK_C, FINALIZE_C):
                _finalize_grad_sums(
                    part_gz_ptr, part_gzx_ptr, var_ptr, gw_ptr, gb_ptr, coef_ptr, eps_hi, eps_lo,
                    cb * BLOCK_C + sub + tl.arange(0, FINALIZE_C), C, M, row_programs,
                    NEED_AFFINE, TRAINING, ACC, BLOCK_P, FINALIZE_C, w_ptr, mean_ptr, HAS_WEIGHT, FOLD,
                )
            release_counter(counter_ptr + cb)


@triton.jit
def _finalize_grad_sums(
    part_gz_ptr, part_gzx_ptr, var_ptr, gw_ptr, gb_ptr, coef_ptr, eps_hi, eps_lo, chans, C, M, row_programs,
    NEED_AFFINE: tl.constexpr, TRAINING: tl.constexpr, ACC: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
    w_ptr, mean_ptr, HAS_WEIGHT: tl.constexpr, FOLD: tl.constexpr,
):
    """Sums the partials of channels `chans` over row programs in a fixed order. Writes
    the affine gradients (gw = rstd * sum gz (x - mean), gb = sum gz) and, in training,
    the coefficients of gx: coef[0] = sum gz / M, coef[1] = rstd^2 * sum gz (x - mean) / M."""
    cmask = chans < C
    lanes = tl.arange(0, BLOCK_P)
    acc_gz = tl.zeros([BLOCK_P, BLOCK_C], ACC)
    acc_gzx = tl.zeros([BLOCK_P, BLOCK_C], ACC)
    for start in range(0, row_programs, BLOCK_P):
        p = start + lanes
        offs = p[:, None] * C + chans[None, :]
        mask = (p < row_programs)[:, None] & cmask[None, :]
        acc_gz += tl.load(part_gz_ptr + offs, mask=mask, other=0.0, cache_modifier=".cg")
        acc_gzx += tl.load(part_gzx_ptr + offs, mask=mask, other=0.0, cache_modifier=".cg")
    sum_gz = tl.sum(acc_gz, axis=0)
    sum_gzx = tl.sum(acc_gzx, axis=0)
    rstd = _rstd(_load_channels(var_ptr, chans, C, ACC), eps_hi, eps_lo, ACC == tl.float64)
    if NEED_AFFINE:
        _store_affine_grads(gw_ptr, gb_ptr, sum_gz, sum_gzx, rstd, chans, C)
    if FOLD:
        scale = rstd
        if HAS_WEIGHT:
            scale = rstd * _load_channels(w_ptr, chans, C, ACC)
        _store_fold_coefficients(coef_ptr, sum_gz / M, sum_gzx * rstd * rstd / M, scale,
                                 _load_channels(mean_ptr, chans, C, ACC), chans, C)
    elif TRAINING:
        tl.store(coef_ptr + chans, sum_gz / M, mask=cmask)
        tl.store(coef_ptr + C + chans, sum_gzx * rstd * rstd / M, mask=cmask)


@triton.jit
def _store_fold_coefficients(coef_ptr, mean_gz, coef, scale, mean, chans, C):
    cmask = chans < C
    tl.store(coef_ptr + chans, mean_gz, mask=cmask)
    tl.store(coef_ptr + C + chans, coef, mask=cmask)
    tl.store(coef_ptr + 2 * C + chans, scale, mask=cmask)
    tl.store(coef_ptr + 3 * C + chans, mean, mask=cmask)


@triton.jit
def _bn_grad_input_kernel(
    g_ptr, s_ptr, x_ptr, gx_ptr, w_ptr, mean_ptr, var_ptr, coef_ptr, gw_ptr, gb_ptr,
    eps_hi, eps_lo, alpha, C, HW, M, hw_blocks, num_tiles, tiles_per_program,
    SUMS: tl.constexpr, ACT: tl.constexpr, NEED_AFFINE: tl.constexpr, HAS_WEIGHT: tl.constexpr,
    LAYOUT: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """gx = scale * (gz - sum gz / M - (x - mean) * rstd^2 * sum gz (x - mean) / M) in
    training, gx = scale * gz in eval (SUMS 'none'); scale = weight * rstd. SUMS
    'workspace' reads the two sums' coefficients from the finalize kernel, 'own' (one
    row program holds every tile) computes them first, with the affine gradients."""
    r = tl.program_id(0)
    chans = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mean = _load_channels(mean_ptr, chans, C, ACC)
    rstd = _rstd(_load_channels(var_ptr, chans, C, ACC), eps_hi, eps_lo, ACC == tl.float64)
    scale = rstd
    if HAS_WEIGHT:
        scale = rstd * _load_channels(w_ptr, chans, C, ACC)
    if SUMS == "workspace":
        mean_gz = _load_channels(coef_ptr, chans, C, ACC)
        coef = _load_channels(coef_ptr + C, chans, C, ACC)
    elif SUMS == "own":
        sum_gz, sum_gzx = _grad_sums(
            g_ptr, s_ptr, x_ptr, gx_ptr, mean, scale, alpha, 0, num_tiles, chans, C, HW, M, hw_blocks,
            ACT, False, LAYOUT, ACC, BLOCK_R, BLOCK_C,
        )
        if NEED_AFFINE:
            _store_affine_grads(gw_ptr, gb_ptr, sum_gz, sum_gzx, rstd, chans, C)
        mean_gz = sum_gz / M
        coef = sum_gzx * rstd * rstd / M
    first = r * tiles_per_program
    last = tl.minimum(first + tiles_per_program, num_tiles)
    for t in range(first, last):
        offs, mask, valid = _tile(t, chans, C, HW, M, hw_blocks, LAYOUT, BLOCK_R)
        gz = _grad_z(g_ptr, s_ptr, offs, mask, alpha, ACT, ACC)
        if SUMS == "none":
            gx = gz * scale[None, :]
        else:
            x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
            gx = scale[None, :] * ((gz - mean_gz[None, :]) - (x - mean[None, :]) * coef[None, :])
        tl.store(gx_ptr + offs, gx.to(gx_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------- launchers


def _next_pow2(n: int) -> int:
    # Plain ints: triton's host helpers are constexpr functions, slow per call.
    return 1 << (max(int(n), 1) - 1).bit_length()


class _Plan:
    """Layout, tile shape and work split of one call signature (x's shape and strides,
    the launch config): the kernels read x itself when it is NCHW or channels_last,
    else an NCHW copy (`read`). Holds no tensor, so it is cached with the launch."""

    def __init__(self, x: torch.Tensor, cfg: BatchNormConfig):
        n, c, h, w = x.shape
        hw = h * w
        self.copy = False
        if x.is_contiguous() and hw > 1 and c > 1:
            self.layout = PLANES
        elif x.is_contiguous(memory_format=torch.channels_last):
            self.layout = ROWS
        elif x.is_contiguous():
            self.layout = PLANES
        else:
            self.layout, self.copy = PLANES, True
        self.N, self.C, self.HW, self.M = n, c, hw, n * hw
        self._split(cfg, cfg.max_block_c)
        if not self.fused and self.layout == ROWS and self.M <= cfg.fused_max_rows:
            # Few rows: one program per narrow channel block holds all of its rows.
            self._split(cfg, cfg.fused_block_c)
            self.tiles_per_program, self.row_programs, self.fused = self.num_tiles, 1, True
        self.block_p = min(_next_pow2(self.row_programs), cfg.finalize_block_p)
        # Channels merged at a time by the last program of a channel block to arrive.
        self.finalize_c = min(cfg.finalize_block_c, self.block_c)
        self.num_warps = cfg.num_warps
        self.device = x.device

    def _split(self, cfg: BatchNormConfig, max_block_c: int) -> None:
        """Tile shape and row programs, with channel blocks of at most max_block_c in
        the rows layout."""
        c, hw = self.C, self.HW
        if self.layout == ROWS:
            self.block_c = min(_next_pow2(c), max_block_c)
            self.block_r = min(max(cfg.tile // self.block_c, 1), _next_pow2(self.M))
            self.hw_blocks = 1
            self.num_tiles = cdiv(self.M, self.block_r)
        else:
            self.block_r = min(_next_pow2(hw), cfg.max_block_r)
            self.block_c = min(_next_pow2(c), max(cfg.tile // self.block_r, 1))
            self.hw_blocks = cdiv(hw, self.block_r)
            self.num_tiles = self.N * self.hw_blocks
        self.channel_blocks = cdiv(c, self.block_c)
        # Split path: enough row programs to fill `target_programs`, each with an equal
        # run of consecutive tiles.
        rows = max(1, min(self.num_tiles, cfg.target_programs // max(self.channel_blocks, 1)))
        self.tiles_per_program = max(cdiv(self.num_tiles, rows), 1)  # x may be empty
        self.row_programs = cdiv(self.num_tiles, self.tiles_per_program)
        self.fused = self.row_programs == 1 or self.num_tiles <= cfg.fused_max_tiles

    def geometry(self):
        return (self.C, self.HW, self.M, self.hw_blocks, self.num_tiles)

    def grid(self, fused: bool):
        return (1 if fused else self.row_programs, self.channel_blocks)

    def tiles(self, fused: bool) -> int:
        return self.num_tiles if fused else self.tiles_per_program

    def counters(self) -> torch.Tensor:
        """A zero int32 counter per channel block (kernels/_arrival.py)."""
        return tile_counters(self.channel_blocks, self.device)

    def read(self, x: torch.Tensor) -> torch.Tensor:
        """The tensor the kernels read for x: x itself, or its NCHW copy."""
        return x.contiguous() if self.copy else x

    def in_layout(self, t: torch.Tensor, xk: torch.Tensor) -> torch.Tensor:
        """t (shaped like x) with the strides the kernels assume (those of xk, what
        `read` gave): t itself, or a copy."""
        ok = t.is_contiguous() if self.layout == PLANES else t.is_contiguous(memory_format=torch.channels_last)
        if ok:
            return t
        out = torch.empty_like(xk)
        out.copy_(t)
        return out

    def restore(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """An output in the memory format of the caller's x (empty_like semantics)."""
        if not self.copy:
            return t
        out = new_output_like(x)
        out.copy_(t)
        return out


def _check_x(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a 4-D tensor [N, C, H, W], got {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype not in SUPPORTED:
        raise TypeError(f"x must be {SUPPORTED_NAMES}, got {x.dtype}")
    if x.numel() >= 2**31:
        raise ValueError(f"x has {x.numel()} elements; at most 2**31 - 1 are supported")


def _check_channels(x: torch.Tensor, **tensors) -> None:
    for name, t in tensors.items():
        if t is None:
            continue
        if t.dim() != 1 or t.shape[0] != x.shape[1]:
            raise ValueError(f"{name} must have shape [{x.shape[1]}] (the channels of x), got {tuple(t.shape)}")
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}")


def _plan_fwd(x, weight, bias, running_mean, running_var, training, eps, act, alpha, update=None):
    """Checks and launch of bn_fwd, a function of (x, weight, bias, running_mean,
    running_var[, update]): layout, tiles, grids and scalars are worked out once per
    call signature (kernels/_plans.py)."""
    _check_x(x)
    _check_channels(x, weight=weight, bias=bias, running_mean=running_mean, running_var=running_var)
    if not training and (running_mean is None or running_var is None):
        raise ValueError("running_mean and running_var are required when training=False")
    if training and x.numel() == 0:
        raise ValueError(f"x of shape {tuple(x.shape)} has no values to compute batch statistics from")
    if update is not None:
        if not training:
            raise ValueError("bn_fwd: update (the running statistics to update) needs training=True")
        _check_running("bn_fwd", x, accumulator_dtype(x.dtype), update)
    acc = accumulator_dtype(x.dtype)
    c, device = x.shape[1], x.device
    store_z, empty = needs_preactivation(act), x.numel() == 0
    plan = _Plan(x, config())
    geometry = plan.geometry()
    common = dict(LAYOUT=plan.layout, ACC=accumulator_type(x.dtype), BLOCK_R=plan.block_r, BLOCK_C=plan.block_c,
                  num_warps=plan.num_warps)
    stats = "running" if not training else "own" if plan.fused else "batch"
    fused = stats == "own"
    stats_grid, stats_args = plan.grid(False), (*geometry, plan.tiles_per_program)
    stats_flags = dict(BLOCK_P=plan.block_p, FINALIZE_C=plan.finalize_c, **common)
    eps_hi, eps_lo = split_float32(eps)
    normalize_grid = plan.grid(fused)
    normalize_args = (eps_hi, eps_lo, float(alpha), *geometry, plan.tiles(fused))
    normalize_flags = dict(STATS=stats, ACT=act, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None,
                           STORE_Z=store_z, **common)
    if update is not None:
        normalize_flags["UPDATE_RUNNING"] = True
    rp = plan.row_programs
    stats_launch = DirectLaunch(_bn_stats_kernel, stats_grid)
    normalize_launch = DirectLaunch(_bn_normalize_kernel, normalize_grid)

    def launch(x, weight, bias, running_mean, running_var, update=None):
        xk = plan.read(x)
        y = new_output_like(xk)
        z = new_output_like(xk) if store_z else x.new_empty(0)
        if training:
            mean, var = new_output((c,), acc, device), new_output((c,), acc, device)
        else:
            mean, var = x.new_empty(0, dtype=acc), x.new_empty(0, dtype=acc)
        if empty:
            return plan.restore(y, x), plan.restore(z, x) if store_z else z, mean, var
        if stats == "running":
            stat_mean, stat_var, shift = running_mean, running_var, y
        elif fused:
            stat_mean, stat_var, shift = mean, var, mean
        else:
            part_count, part_mean, part_m2 = (new_output((rp, c), acc, device) for _ in range(3))
            shift = new_output((c,), acc, device)
            stats_launch(
                xk, part_count, part_mean, part_m2, mean, var, shift, plan.counters(), *stats_args, **stats_flags
            )
            stat_mean, stat_var = mean, var
        mean_out, var_out = (mean, var) if training else (y, y)
        running = {}
        if update is not None:
            # The running statistics go where the normalize kernel's mode updates them.
            run_mean, run_var = update[:2]
            if fused:
                stat_mean, stat_var = run_mean, run_var
            else:
                mean_out, var_out = run_mean, run_var
            running = _running_update_args(update)
        normalize_launch(
            xk, y, z if store_z else y, weight if weight is not None else y, bias if bias is not None else y,
            stat_mean, stat_var, shift, mean_out, var_out, _counter(update, y), *normalize_args, **running,
            **normalize_flags,
        )
        return plan.restore(y, x), plan.restore(z, x) if store_z else z, mean, var

    return launch


def _meta(*tensors):
    return tuple([_plans.meta(t) for t in tensors])  # a list, not a generator: every call comes here


def bn_fwd(x, weight, bias, running_mean, running_var, training, eps, act, alpha, update=None):
    """(y, z, mean, var): y = act(batch_norm(x)) in x's memory format; z (the argument
    of act) only for silu, else empty; in training the batch mean and biased variance
    (float32, float64 for float64 x), in eval empty tensors (the running statistics are
    used). running_mean and running_var are read (eval), never written. update =
    (running_mean, running_var, momentum, var_factor[, num_batches_tracked]), float32
    running and batch statistics, training only: the launch also updates these in place
    as bn_normalize's `running` does (nn.BatchNorm's update)."""
    launch = _plans.replay("bn_fwd")
    if launch is None:
        key = ("bn_fwd", _meta(x, weight, bias, running_mean, running_var), training, eps, act, alpha,
               _update_meta(update), _CONFIGS.overridden())
        launch = _plans.record("bn_fwd", _plans.get(key) or _plans.put(
            key, _plan_fwd(x, weight, bias, running_mean, running_var, training, eps, act, alpha, update)))
    return launch(x, weight, bias, running_mean, running_var, update)


def _plan_backward(grad, s, x, weight, mean, var, training, eps, act, alpha, need_affine):
    """Checks and launch of bn_backward, a function of (grad, s, x, weight, mean, var),
    worked out once per call signature like _plan_fwd."""
    _check_x(x)
    _check_channels(x, weight=weight, mean=mean, var=var)
    if grad.shape != x.shape or (needs_saved(act, None) and s.shape != x.shape):
        raise ValueError(
            f"grad and the saved tensor must be shaped like x {tuple(x.shape)}, got {tuple(grad.shape)} and {tuple(s.shape)}"
        )
    acc = accumulator_dtype(x.dtype)
    c, device = x.shape[1], x.device
    pdtype = x.dtype if weight is None else weight.dtype
    empty, linear = x.numel() == 0, not needs_saved(act, None)
    plan = _Plan(x, config())
    eps_hi, eps_lo = split_float32(eps)
    geometry = plan.geometry()
    common = dict(LAYOUT=plan.layout, ACC=accumulator_type(x.dtype), BLOCK_R=plan.block_r, BLOCK_C=plan.block_c,
                  num_warps=plan.num_warps)
    scalars = (eps_hi, eps_lo, float(alpha))
    finalize = dict(BLOCK_P=plan.block_p, FINALIZE_C=plan.finalize_c)
    has_weight = weight is not None
    split_args = (*scalars, *geometry, plan.tiles_per_program)
    rp = plan.row_programs
    if not training and not need_affine:
        path = "eval"
        flags = dict(SUMS="none", ACT=act, NEED_AFFINE=False, HAS_WEIGHT=has_weight, **common)
    elif not training:  # gx needs no sums: one pass writes it and accumulates them
        path = "eval_affine_fused" if plan.fused else "eval_affine"
        flags = dict(ACT=act, STORE_GX=True, FINAL=plan.fused, HAS_WEIGHT=has_weight, NEED_AFFINE=True,
                     TRAINING=False, **finalize, **common)
    elif plan.fused:
        path = "train_fused"
        flags = dict(SUMS="own", ACT=act, NEED_AFFINE=need_affine, HAS_WEIGHT=has_weight, **common)
    else:
        path = "train"
        sums_flags = dict(ACT=act, STORE_GX=False, FINAL=False, HAS_WEIGHT=has_weight, NEED_AFFINE=need_affine,
                          TRAINING=True, **finalize, **common)
        flags = dict(SUMS="workspace", ACT=act, NEED_AFFINE=False, HAS_WEIGHT=has_weight, **common)
    # The launches of the paths (grid(True): one program holds every tile of its channels).
    input_split, input_fused = (DirectLaunch(_bn_grad_input_kernel, plan.grid(f)) for f in (False, True))
    sums_split, sums_fused = (DirectLaunch(_bn_grad_sums_kernel, plan.grid(f)) for f in (False, True))

    def launch(grad, s, x, weight, mean, var):
        if need_affine:
            gw, gb = new_output((c,), pdtype, device), new_output((c,), pdtype, device)
        else:
            gw, gb = x.new_empty(0, dtype=acc), x.new_empty(0, dtype=acc)
        xk = plan.read(x)
        gx = new_output_like(xk)
        if empty:
            if need_affine:
                gw.zero_(), gb.zero_()
            return plan.restore(gx, x), gw, gb
        g = plan.in_layout(grad, xk)
        s = plan.in_layout(s, xk) if not linear else g
        w = weight if weight is not None else x
        affine_out = (gw, gb) if need_affine else (gx, gx)
        if path == "eval":
            input_split(
                g, s, xk, gx, w, mean, var, gx, gx, gx, *split_args, **flags,
            )
        elif path == "eval_affine_fused":
            sums_fused(
                g, s, xk, gx, w, mean, var, gx, gx, *affine_out, gx, gx, *scalars, *geometry, plan.num_tiles,
                **flags,
            )
        elif path == "eval_affine":
            part = new_output((2, rp, c), acc, device)
            sums_split(
                g, s, xk, gx, w, mean, var, part[0], part[1], *affine_out, gx, plan.counters(), *split_args,
                **flags,
            )
        elif path == "train_fused":
            input_fused(
                g, s, xk, gx, w, mean, var, gx, *affine_out, *scalars, *geometry, plan.num_tiles, **flags,
            )
        else:
            part = new_output((2, rp, c), acc, device)
            coef = new_output((2, c), acc, device)
            sums_split(
                g, s, xk, gx, w, mean, var, part[0], part[1], *affine_out, coef, plan.counters(), *split_args,
                **sums_flags,
            )
            input_split(
                g, s, xk, gx, w, mean, var, coef, gx, gx, *split_args, **flags,
            )
        return plan.restore(gx, x), gw, gb

    return launch


def bn_backward(grad, s, x, weight, mean, var, training, eps, act, alpha, need_affine):
    """(gx, gw, gb): gradients of bn_fwd's y with respect to x, weight and bias, given
    dL/dy, the saved s (y; z for silu; empty for linear), and the statistics the
    forward used (batch statistics in training, running statistics in eval). gx in x's
    memory format; gw, gb (in weight's dtype, x's if weight is None) empty unless
    need_affine."""
    launch = _plans.replay("bn_backward")
    if launch is None:
        key = ("bn_backward", _meta(grad, s, x, weight, mean, var), training, eps, act, alpha, need_affine,
               _CONFIGS.overridden())
        launch = _plans.record("bn_backward", _plans.get(key) or _plans.put(
            key, _plan_backward(grad, s, x, weight, mean, var, training, eps, act, alpha, need_affine)))
    return launch(grad, s, x, weight, mean, var)


# ----------------------------------------------------------------------------- conv -> batch norm blocks
# The batch-norm launches of fastgan.ops.conv_bn: its statistics come from the conv's
# epilogue and its input gradient is folded into the conv's backward kernels
# (kernels/_conv_bn.py), so what is left here is the normalize pass and, when no
# consumer's dgrad computed them, the backward sums.


class _NormalizePlan:
    """bn_normalize's launch for one call signature: grid, scalars and flags worked out
    once (the plan is cached: a training step repeats its signatures)."""

    def __init__(self, x, weight, bias, eps, act, alpha, update_running):
        _check_x(x)
        _check_channels(x, weight=weight, bias=bias)
        self.plan = plan = _Plan(x, config())
        self.store_z = needs_preactivation(act)
        self.has_weight, self.has_bias = weight is not None, bias is not None
        eps_hi, eps_lo = split_float32(eps)
        self.grid = plan.grid(False)
        self.launch = DirectLaunch(_bn_normalize_kernel, self.grid)
        self.scalars = (eps_hi, eps_lo, float(alpha), *plan.geometry(), plan.tiles(False))
        self.flags = dict(STATS="batch", ACT=act, HAS_WEIGHT=self.has_weight, HAS_BIAS=self.has_bias,
                          STORE_Z=self.store_z, LAYOUT=plan.layout, ACC=accumulator_type(x.dtype),
                          BLOCK_R=plan.block_r, BLOCK_C=plan.block_c, num_warps=plan.num_warps)
        if update_running:
            self.flags["UPDATE_RUNNING"] = True
        # y's (shape, strides) as empty_like(x) gives them, when the kernels read x itself.
        self.out_spec = None if plan.copy else _like_spec(x)


def _like_spec(x: torch.Tensor) -> tuple:
    """(shape, strides) of torch.empty_like(x), for new_strided."""
    return tuple(x.shape), torch.empty_like(torch.empty_strided(x.shape, x.stride(), device="meta")).stride()


def _running_update_args(running) -> dict:
    """The normalize kernel's keyword arguments of an UPDATE_RUNNING launch, from
    running = (running_mean, running_var, momentum, var_factor[, num_batches_tracked])."""
    momentum = float(running[2])
    args = dict(momentum=momentum, keep=1.0 - momentum, var_factor=float(running[3]))
    if _counter(running, None) is not None:
        args["COUNT_BATCH"] = True
    return args


def _counter(running, otherwise):
    """The num_batches_tracked of an in-kernel update (the normalize kernel's count_ptr,
    passed by position: launch programs take tensors only so), else `otherwise` (a
    pointer the kernel never reads)."""
    if running is None or len(running) < 5 or running[4] is None:
        return otherwise
    return running[4]


def _update_meta(running):
    """What a launch plan depends on of an in-kernel update's tensors."""
    if running is None:
        return None
    meta = _plans.meta
    return meta(running[0]), meta(running[1]), meta(_counter(running, None))


def _check_running(op, x, stats_dtype, running) -> None:
    """The running statistics an in-kernel update writes: float32 [C] contiguous on x's
    device, from float32 batch statistics; the batch counter (when given) an int64
    scalar on x's device, as nn.BatchNorm's num_batches_tracked."""
    mean, var = running[:2]
    for name, t in (("running_mean", mean), ("running_var", var)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or stats_dtype != torch.float32 \
                or t.shape != (x.shape[1],) or t.stride() != (1,) or t.device != x.device:
            got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{op}: {name} must be a contiguous float32 [{x.shape[1]}] tensor on x's device "
                             f"with float32 statistics, got {got} (statistics {stats_dtype})")
    count = _counter(running, None)
    if count is not None and (not isinstance(count, torch.Tensor) or count.dtype != torch.int64
                              or count.numel() != 1 or count.device != x.device):
        got = f"{count.dtype} {tuple(count.shape)}" if isinstance(count, torch.Tensor) else type(count).__name__
        raise ValueError(f"{op}: num_batches_tracked must be an int64 tensor of one element on x's device, "
                         f"got {got}")


def bn_normalize(x, weight, bias, stats, eps, act, alpha, running=None):
    """(y, z) of bn_fwd in training given x's batch statistics stats = (mean, biased
    var, mean - x[0, c, 0, 0]), the rows of kernels.conv.conv_fwd_bn_stats's [3, C]
    result: one launch of the normalize pass; z is None unless act needs the
    pre-activation (silu). running = (running_mean, running_var, momentum,
    var_factor), float32: the same launch updates them in place as nn.BatchNorm does
    (running = (1 - momentum) running + momentum batch value, the variance unbiased
    by var_factor = M / (M - 1)). A fifth element, num_batches_tracked (int64, or None),
    is counted up by 1 in that launch too."""
    p = _plans.replay("bn_normalize")
    if p is None:
        key = ("bn_normalize", _meta(x, weight, bias), eps, act, alpha, _update_meta(running),
               None if running is None else stats[0].dtype, _CONFIGS.overridden())
        p = _plans.get(key)
        if p is None:
            if running is not None:
                _check_running("bn_normalize", x, stats[0].dtype, running)
            p = _plans.put(key, _NormalizePlan(x, weight, bias, eps, act, alpha, running is not None))
        _plans.record("bn_normalize", p)
    plan = p.plan
    if p.out_spec is not None:  # x read as it is
        xk, dtype, device = x, x.dtype, x.device
        y = new_strided(p.out_spec, dtype, device)
        z = new_strided(p.out_spec, dtype, device) if p.store_z else None
    else:
        xk = plan.read(x)
        y = new_output_like(xk)
        z = new_output_like(xk) if p.store_z else None
    if x.numel() == 0:
        return plan.restore(y, x), z
    mean, var, shift = stats
    if running is None:
        p.launch(
            xk, y, z if p.store_z else y, weight if p.has_weight else y, bias if p.has_bias else y,
            mean, var, shift, y, y, y, *p.scalars, **p.flags,
        )
    else:
        p.launch(
            xk, y, z if p.store_z else y, weight if p.has_weight else y, bias if p.has_bias else y,
            mean, var, shift, running[0], running[1], _counter(running, y), *p.scalars,
            **_running_update_args(running), **p.flags,
        )
    return plan.restore(y, x), None if z is None else plan.restore(z, x)


def bn_fold_coefficients(grad, s, x, weight, mean, var, eps, act, alpha):
    """(coef [4, C], gw, gb) of a training-mode batch norm + act: the coefficients of
    its input gradient as the conv kernels fold it (kernels/_conv_bn.py) and the
    affine gradients, from one launch of the sums kernel."""
    p = _plans.replay("bn_fold_coefficients")
    if p is None:
        key = ("bn_fold_coefficients", _meta(grad, s, x, weight, mean, var), eps, act, alpha, _CONFIGS.overridden())
        p = _plans.get(key)
        if p is None:
            _check_x(x)
            _check_channels(x, weight=weight, mean=mean, var=var)
            p = _plans.put(key, _FoldPlan(x, weight, eps, act, alpha))
        _plans.record("bn_fold_coefficients", p)
    plan, device = p.plan, x.device
    gw, gb = new_strided(p.vec_spec, p.pdtype, device), new_strided(p.vec_spec, p.pdtype, device)
    coef = new_strided(p.coef_spec, p.acc, device)
    xk = plan.read(x)
    g = plan.in_layout(grad, xk)
    s = plan.in_layout(s, xk) if p.uses_s else g
    w = weight if weight is not None else x
    if plan.fused:
        p.sums(
            g, s, xk, x, w, mean, var, coef, coef, gw, gb, coef, coef, *p.scalars, FINAL=True, **p.flags,
        )
    else:
        part = new_strided(p.part_spec, p.acc, device)
        p.sums(
            g, s, xk, x, w, mean, var, part[0], part[1], gw, gb, coef, plan.counters(), *p.scalars, FINAL=False,
            **p.flags,
        )
    return coef, gw, gb


class _FoldPlan:
    """bn_fold_coefficients's launch for one call signature: outputs, grid, scalars
    and flags worked out once."""

    def __init__(self, x, weight, eps, act, alpha):
        self.plan = plan = _Plan(x, config())
        c = x.shape[1]
        self.acc = accumulator_dtype(x.dtype)
        self.pdtype = x.dtype if weight is None else weight.dtype
        self.vec_spec, self.coef_spec = output_spec((c,)), output_spec((4, c))
        self.part_spec = output_spec((2, plan.row_programs, c))
        self.uses_s = needs_saved(act, None)
        self.sums = DirectLaunch(_bn_grad_sums_kernel, plan.grid(plan.fused))
        eps_hi, eps_lo = split_float32(eps)
        self.scalars = (eps_hi, eps_lo, float(alpha), *plan.geometry(),
                        plan.num_tiles if plan.fused else plan.tiles_per_program)
        self.flags = dict(ACT=act, STORE_GX=False, HAS_WEIGHT=weight is not None, NEED_AFFINE=True, TRAINING=True,
                          FOLD=True, BLOCK_P=plan.block_p, FINALIZE_C=plan.finalize_c, LAYOUT=plan.layout,
                          ACC=accumulator_type(x.dtype), BLOCK_R=plan.block_r, BLOCK_C=plan.block_c,
                          num_warps=plan.num_warps)
