"""Batch-norm pieces fused into the convolution kernels (conv.py), for a conv ->
batch norm -> activation block (fastgan.ops.conv_bn):

- forward epilogue (`tile_stats` + `finalize_stats`): the output tile, rounded as it
  is stored, gives per-channel (count, mean, M2) partials in a fixed slot per row tile
  and phase; the last program of a column tile to arrive (kernels/_arrival.py) merges
  the slots in slot order (mean = sum n_i mean_i / M, then M2 = sum M2_i +
  n_i (mean_i - mean)^2) and writes (mean, biased var, mean - pivot) for the
  normalize kernel of batch_norm.py, which stays a launch of its own.
- backward operand (`folded_operand`): dL/dx of the batch norm (x its input, the conv
  output), computed from dL/dy, the saved tensor of the activation, x and four
  per-channel coefficients as the dgrad / wgrad kernels load it, so the batch-norm
  input gradient is never stored: coef rows are (mean gz, rstd^2 sum gz (x - mean) / M,
  weight * rstd, mean), gx = scale * ((gz - mean_gz) - (x - mean) * coef1).
- dgrad epilogue (`tile_sums` + `finalize_sums`): the input gradient a dgrad produces
  is dL/dy of the block before it; its batch-norm sums (sum gz, sum gz (x - mean)) are
  reduced the same way as the forward statistics, and the last arrival writes that
  block's affine gradients and fold coefficients.
Every float sum has a fixed order: the same inputs give the same bits.
"""

from __future__ import annotations

import triton
import triton.language as tl

from . import activation as KA
from .batch_norm import merge_partials


@triton.jit
def _channel_vector(ptr, chans, ok, ACC: tl.constexpr, AXIS: tl.constexpr):
    """ptr[chans] broadcastable along the tile axis that holds channels."""
    v = tl.load(ptr + chans, mask=ok, other=0.0).to(ACC)
    if AXIS == 0:
        return v[:, None]
    else:
        return v[None, :]


@triton.jit
def folded_operand(g_ptr, s_ptr, x_ptr, coef_ptr, g_off, s_off, mask, chans, chans_ok, C, alpha,
                   ACT: tl.constexpr, ACC: tl.constexpr, AXIS: tl.constexpr):
    """A tile of dL/dx of batch norm + act (x read with s's offsets; channels `chans`
    along tile axis AXIS; 0 outside `mask`), in the accumulator dtype."""
    # Each term is reduced as soon as it is loaded: fewer tiles live at once.
    centered = tl.load(x_ptr + s_off, mask=mask, other=0.0).to(ACC) - _channel_vector(
        coef_ptr + 3 * C, chans, chans_ok, ACC, AXIS)
    gz = tl.load(g_ptr + g_off, mask=mask, other=0.0).to(ACC)
    if not KA.saves_nothing(ACT):
        s = tl.load(s_ptr + s_off, mask=mask, other=0.0).to(ACC)
        gz = gz * KA.act_derivative(s, ACT, alpha, 1.0, 0.0, False)
    gz = (gz - _channel_vector(coef_ptr, chans, chans_ok, ACC, AXIS)) \
        - centered * _channel_vector(coef_ptr + C, chans, chans_ok, ACC, AXIS)
    return tl.where(mask, _channel_vector(coef_ptr + 2 * C, chans, chans_ok, ACC, AXIS) * gz, 0.0)


@triton.jit
def tile_stats(v, mask, part_ptr, slot, slots, cols, col_ok, C):
    """(count, mean, M2) per column of the valid rows of v, to slot `slot` of the
    [3, slots, C] partials."""
    n = tl.sum(mask.to(v.dtype), axis=0)
    mean = tl.sum(tl.where(mask, v, 0.0), axis=0) / tl.maximum(n, 1.0)
    dev = tl.where(mask, v - mean[None, :], 0.0)
    m2 = tl.sum(dev * dev, axis=0)
    off = slot * C + cols
    tl.store(part_ptr + off, n, mask=col_ok)
    tl.store(part_ptr + slots * C + off, mean, mask=col_ok)
    tl.store(part_ptr + 2 * slots * C + off, m2, mask=col_ok)


@triton.jit
def finalize_stats(part_ptr, stat_ptr, pivot_ptr, s_pivot, slots, cols, col_ok, C, M,
                   ACC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
    """Merges the partials of columns `cols` over all slots in slot order
    (batch_norm.merge_partials) and writes the [3, C] statistics (mean, biased var,
    mean - pivot), pivot being output element (0, c, 0, 0)."""
    mean, var = merge_partials(part_ptr, part_ptr + slots * C, part_ptr + 2 * slots * C, slots, cols, col_ok, C, M,
                               ACC, BLOCK_P, BLOCK_N)
    pivot = tl.load(pivot_ptr + cols * s_pivot, mask=col_ok, other=0.0, cache_modifier=".cg").to(ACC)
    tl.store(stat_ptr + cols, mean, mask=col_ok)
    tl.store(stat_ptr + C + cols, var, mask=col_ok)
    tl.store(stat_ptr + 2 * C + cols, mean - pivot, mask=col_ok)


@triton.jit
def tile_sums(g, mask, s_ptr, x_ptr, mean_ptr, off, part_ptr, slot, slots, cols, col_ok, C, alpha,
              ACT: tl.constexpr, ACC: tl.constexpr):
    """(sum gz, sum gz (x - mean)) per column over the valid rows of the tile, gz =
    g * act'(s), to slot `slot` of the [2, slots, C] partials."""
    gz = g
    if not KA.saves_nothing(ACT):
        s = tl.load(s_ptr + off, mask=mask, other=0.0).to(ACC)
        gz = gz * KA.act_derivative(s, ACT, alpha, 1.0, 0.0, False)
    x = tl.load(x_ptr + off, mask=mask, other=0.0).to(ACC)
    mean = tl.load(mean_ptr + cols, mask=col_ok, other=0.0).to(ACC)
    gz = tl.where(mask, gz, 0.0)
    sum_gz = tl.sum(gz, axis=0)
    sum_gzx = tl.sum(gz * (x - mean[None, :]), axis=0)
    tl.store(part_ptr + slot * C + cols, sum_gz, mask=col_ok)
    tl.store(part_ptr + slots * C + slot * C + cols, sum_gzx, mask=col_ok)


@triton.jit
def finalize_sums(part_ptr, mean_ptr, var_ptr, w_ptr, gw_ptr, gb_ptr, coef_ptr, eps_hi, eps_lo, slots, cols,
                  col_ok, C, M, HAS_WEIGHT: tl.constexpr, ACC: tl.constexpr,
                  BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
    """Sums the [2, slots, C] partials of columns `cols` in slot order; writes the
    affine gradients (gw = rstd sum gz (x - mean), gb = sum gz) and the [4, C] fold
    coefficients of folded_operand."""
    lanes = tl.arange(0, BLOCK_P)
    acc_gz = tl.zeros([BLOCK_P, BLOCK_N], ACC)
    acc_gzx = tl.zeros([BLOCK_P, BLOCK_N], ACC)
    for start in range(0, slots, BLOCK_P):
        p = start + lanes
        offs = p[:, None] * C + cols[None, :]
        m = (p < slots)[:, None] & col_ok[None, :]
        acc_gz += tl.load(part_ptr + offs, mask=m, other=0.0, cache_modifier=".cg")
        acc_gzx += tl.load(part_ptr + slots * C + offs, mask=m, other=0.0, cache_modifier=".cg")
    sum_gz = tl.sum(acc_gz, axis=0)
    sum_gzx = tl.sum(acc_gzx, axis=0)
    var = tl.load(var_ptr + cols, mask=col_ok, other=0.0).to(ACC)
    v = (var + eps_hi) + eps_lo
    if ACC == tl.float64:
        rstd = 1.0 / tl.sqrt(v)
    else:
        rstd = 1.0 / tl.sqrt_rn(v)
    scale = rstd
    if HAS_WEIGHT:
        scale = rstd * tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(ACC)
    tl.store(gw_ptr + cols, (sum_gzx * rstd).to(gw_ptr.dtype.element_ty), mask=col_ok)
    tl.store(gb_ptr + cols, sum_gz.to(gb_ptr.dtype.element_ty), mask=col_ok)
    tl.store(coef_ptr + cols, sum_gz / M, mask=col_ok)
    tl.store(coef_ptr + C + cols, sum_gzx * rstd * rstd / M, mask=col_ok)
    tl.store(coef_ptr + 2 * C + cols, scale, mask=col_ok)
    tl.store(coef_ptr + 3 * C + cols, tl.load(mean_ptr + cols, mask=col_ok, other=0.0).to(ACC), mask=col_ok)
