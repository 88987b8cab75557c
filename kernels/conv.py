"""Convolution and transposed convolution + bias + activation: implicit-GEMM Triton
kernels, forward and backward, with the same three functions and signatures as
fastgan.reference.conv (conv_fwd, conv_grad_input, conv_grad_weight).

_conv_gather_kernel computes the forward of conv2d / conv_transpose2d and the input
gradient of either; _conv_wgrad_kernel the weight and bias gradients. Layout: GEMM
view over NHWC (rows N*OH*OW, columns C_out, reduction kh*kw*C_in); any input strides,
channels_last outputs. Knobs: the tile per kind (kernels/_tiles.py, kernels/configs),
FLAT_K / FLAT_N for few channels, split-K slices of the weight gradient, the dot
precision. The derivation (phases of a transposed convolution, FLAT_K, layouts,
accumulation): docs/kernels.md, "Convolution kernels".
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from fastgan.reference.activations import needs_preactivation, needs_saved
from fastgan.reference.conv import output_size

from . import _plans, _tiles
from ._arrival import arrived_last, release_counter, scratch, sum_slots, tile_counters
from ._conv_bn import finalize_stats, finalize_sums, folded_operand, tile_stats, tile_sums
from ._plans import cdiv
from ._common import accumulator_dtype, new_output, new_strided, output_spec, split_float32
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
def _phase_geometry(ph, KH, S, P, TRANSPOSED: tl.constexpr):
    """(q0, taps) of phase `ph` along one axis.

    Transposed: output o = ph - P + S*(q0 + i) for i = 0, 1, ... (q0 makes the first one
    the smallest o >= 0), reading input q0 + i - t through taps r = ph + S*t,
    t < ceil((KH - ph) / S). Conv: one phase, o = i, all KH taps. Every quantity
    divided here is non-negative: Triton's integer division truncates on a GPU and
    floors in the interpreter, which agree only there.
    """
    if TRANSPOSED:
        q0 = (P - ph + S - 1) // S
        taps = (KH - ph + S - 1) // S
    else:
        q0 = ph * 0
        taps = KH + ph * 0
    return q0, taps


@triton.jit
def _positions(i, ph, q0, S, P, TRANSPOSED: tl.constexpr):
    """(output coordinate, input coordinate read by tap t = 0) of row index i."""
    if TRANSPOSED:
        return ph - P + S * (q0 + i), q0 + i
    else:
        return i, i * S - P


@triton.jit
def _conv_gather_kernel(
    a_ptr, s_ptr, w_ptr, bias_ptr, y_ptr, z_ptr,
    fx_ptr, fcoef_ptr, part_ptr, stat_ptr, counter_ptr,
    es_ptr, ex_ptr, emean_ptr, evar_ptr, ew_ptr, egw_ptr, egb_ptr,
    NB, C_A, H, W, C_Y, OH, OW, QH, QW,
    KH, KW, SH, SW, PH, PW,
    sa_n, sa_c, sa_h, sa_w,
    ss_n, ss_c, ss_h, ss_w,
    sw_k, sw_n, sw_r, sw_s,
    sy_n, sy_c, sy_h, sy_w, s_bias,
    alpha, gain, clamp, out_scale, eps_hi, eps_lo, e_alpha,
    TRANSPOSED: tl.constexpr, FLAT_K: tl.constexpr, PIXEL_CHANNELS: tl.constexpr,
    ACT: tl.constexpr, HAS_CLAMP: tl.constexpr,
    PROLOGUE: tl.constexpr, EPILOGUE: tl.constexpr, HAS_BIAS: tl.constexpr, STORE_Z: tl.constexpr,
    ACC_DTYPE: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    BN_FOLD: tl.constexpr = False, BN_EPILOGUE: tl.constexpr = "none", E_ACT: tl.constexpr = "linear",
    E_HAS_WEIGHT: tl.constexpr = False, BLOCK_P: tl.constexpr = 8,
):
    """y[n, co, oh, ow] = epilogue(sum A[n, c, ih, iw] * W[c, co, r, s]) over the taps of
    one phase. A has C_A channels and spatial size H x W; y has C_Y channels, OH x OW.
    W is read through (sw_k: A's channel, sw_n: y's channel, sw_r, sw_s). With
    PROLOGUE, A is an incoming gradient dL/dy' and s the tensor its forward saved.
    PIXEL_CHANNELS > 0 (FLAT_K only): A and s are dense channels_last with exactly that
    many channels per pixel, a power of two >= C_A (channels from C_A on are zeros):
    the K index then splits by a constant, and the loads of a tap's channel run are
    provably contiguous and aligned, so the compiler pipelines them with cp.async
    (16-bit pixels of 3 channels, 6 bytes, cannot be loaded so).

    Batch norm of a conv -> batch norm -> act block (kernels/_conv_bn.py): BN_FOLD, A
    is dL/dy of the block's batch norm + act, s the saved tensor of its act and fx its
    input (the conv output, s's layout): A is loaded as the batch norm's input
    gradient, with the fcoef coefficients. BN_EPILOGUE 'stats' (forward): y's
    per-channel statistics go to stat_ptr [3, C_Y]; 'sums' (input gradient): y is
    dL/dy' of the block before this conv (saved tensor es, batch-norm input ex,
    statistics emean / evar, weight ew), whose batch-norm sums give its affine
    gradients egw / egb and fold coefficients stat_ptr [4, C_Y]. Both reduce through
    the per-(row tile, phase) slots of part_ptr and a ticket per column tile."""
    phase = tl.program_id(1)
    ph_h = phase // SW
    ph_w = phase % SW
    q0h, taps_h = _phase_geometry(ph_h, KH, SH, PH, TRANSPOSED)
    q0w, taps_w = _phase_geometry(ph_w, KW, SW, PW, TRANSPOSED)

    rows_total = NB * QH * QW
    pid_m, pid_n = grouped_tile(tl.program_id(0), tl.cdiv(rows_total, BLOCK_M), tl.cdiv(C_Y, BLOCK_N), GROUP_M)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    n = rows // (QH * QW)
    i = (rows // QW) % QH
    j = rows % QW
    oh, ih0 = _positions(i, ph_h, q0h, SH, PH, TRANSPOSED)
    ow, iw0 = _positions(j, ph_w, q0w, SW, PW, TRANSPOSED)
    row_ok = (rows < rows_total) & (oh < OH) & (ow < OW)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < C_Y
    a_row = n * sa_n
    s_row = n * ss_n
    ks = tl.arange(0, BLOCK_K)

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    taps = taps_h * taps_w
    if FLAT_K:
        if PIXEL_CHANNELS > 0:
            iters = tl.cdiv(taps * PIXEL_CHANNELS, BLOCK_K)
        else:
            iters = tl.cdiv(taps * C_A, BLOCK_K)
    else:
        chunks = tl.cdiv(C_A, BLOCK_K)
        iters = taps * chunks
    for it in range(0, iters):
        if FLAT_K:
            # K index = tap * C_A + c: one block spans several taps (per-element taps).
            k = it * BLOCK_K + ks
            if PIXEL_CHANNELS > 0:
                tap = k // PIXEL_CHANNELS
                c = k % PIXEL_CHANNELS
            else:
                tap = k // C_A
                c = k - tap * C_A
            k_ok = tap < taps
            th = tap // tl.maximum(taps_w, 1)  # a phase may have no tap: then nothing is valid
            tw = tap - th * taps_w
            th_a = th[None, :]
            tw_a = tw[None, :]
            th_b = th[:, None]
            tw_b = tw[:, None]
        else:
            # One tap per block, BLOCK_K consecutive channels of it.
            tap = it // chunks
            c = (it - tap * chunks) * BLOCK_K + ks
            k_ok = c < C_A
            th = tap // taps_w
            tw = tap - th * taps_w
            th_a = th
            tw_a = tw
            th_b = th
            tw_b = tw
        if TRANSPOSED:
            ih = ih0[:, None] - th_a
            iw = iw0[:, None] - tw_a
            r = ph_h + SH * th_b
            q = ph_w + SW * tw_b
        else:
            ih = ih0[:, None] + th_a
            iw = iw0[:, None] + tw_a
            r = th_b
            q = tw_b
        a_mask = row_ok[:, None] & k_ok[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        if PIXEL_CHANNELS > 0:
            # sa_w == ss_w == PIXEL_CHANNELS and sa_c == ss_c == 1, as constants.
            a_off = a_row[:, None] + ih * sa_h + iw * PIXEL_CHANNELS + c[None, :]
            s_off = s_row[:, None] + ih * ss_h + iw * PIXEL_CHANNELS + c[None, :]
            w_ok = k_ok & (c < C_A)  # the padding channels have no weight
        else:
            a_off = a_row[:, None] + ih * sa_h + iw * sa_w + c[None, :] * sa_c
            s_off = s_row[:, None] + ih * ss_h + iw * ss_w + c[None, :] * ss_c
            w_ok = k_ok
        if BN_FOLD:
            a = folded_operand(a_ptr, s_ptr, fx_ptr, fcoef_ptr, a_off, s_off, a_mask, c, c < C_A, C_A, alpha,
                               ACT, ACC_DTYPE, 1).to(w_ptr.dtype.element_ty)
        elif PROLOGUE:
            a = gradient_operand(a_ptr, s_ptr, a_off, s_off, a_mask, alpha, gain, clamp,
                                 ACT, HAS_CLAMP, True, ACC_DTYPE).to(w_ptr.dtype.element_ty)
        else:
            a = tl.load(a_ptr + a_off, mask=a_mask, other=0.0)
        b_off = c[:, None] * sw_k + r * sw_r + q * sw_s + cols[None, :] * sw_n
        b = tl.load(w_ptr + b_off, mask=w_ok[:, None] & col_ok[None, :], other=0.0)
        acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION, out_dtype=ACC_DTYPE)

    y_off = (n * sy_n + oh * sy_h + ow * sy_w)[:, None] + cols[None, :] * sy_c
    y_mask = row_ok[:, None] & col_ok[None, :]
    bias_act_store(acc, bias_ptr, s_bias, cols, col_ok, y_ptr, z_ptr, y_off, y_mask,
                   alpha, gain, clamp, out_scale, ACT, HAS_CLAMP, EPILOGUE, HAS_BIAS, STORE_Z)
    if BN_EPILOGUE != "none":
        # The values as stored (the block's act is linear, gain 1, no clamp there).
        v = acc * out_scale
        if HAS_BIAS:
            v = v + tl.load(bias_ptr + cols * s_bias, mask=col_ok, other=0.0).to(ACC_DTYPE)[None, :]
        v = v.to(y_ptr.dtype.element_ty).to(ACC_DTYPE)
        row_tiles = tl.cdiv(rows_total, BLOCK_M)
        slot = phase * row_tiles + pid_m
        slots = row_tiles * tl.num_programs(1)
        if BN_EPILOGUE == "stats":
            tile_stats(v, y_mask, part_ptr, slot, slots, cols, col_ok, C_Y)
        else:
            tile_sums(v, y_mask, es_ptr, ex_ptr, emean_ptr, y_off, part_ptr, slot, slots, cols, col_ok, C_Y,
                      e_alpha, E_ACT, ACC_DTYPE)
        if arrived_last(counter_ptr + pid_n, slots):
            if BN_EPILOGUE == "stats":
                finalize_stats(part_ptr, stat_ptr, y_ptr, sy_c, slots, cols, col_ok, C_Y, NB * OH * OW,
                               ACC_DTYPE, BLOCK_P, BLOCK_N)
            else:
                finalize_sums(part_ptr, emean_ptr, evar_ptr, ew_ptr, egw_ptr, egb_ptr, stat_ptr, eps_hi, eps_lo,
                              slots, cols, col_ok, C_Y, NB * OH * OW, E_HAS_WEIGHT, ACC_DTYPE, BLOCK_P, BLOCK_N)
            release_counter(counter_ptr + pid_n)


@triton.jit
def _conv_wgrad_kernel(
    g_ptr, s_ptr, x_ptr, gw_ptr, gb_ptr, ws_ptr, gb_ws_ptr, counter_ptr, fx_ptr, fcoef_ptr,
    # QH, QW constexpr: the main loop splits each position index by them, and a
    # runtime divisor costs a float-reciprocal division sequence per element per K
    # block (sm_90 SASS of the G2 weight gradient, 64 x 64 x 64: 275 -> 162 loop
    # instructions per 4 HGMMA; one more specialization per phase grid size).
    NB, C_G, C_X, H, W, OH, OW, QH: tl.constexpr, QW: tl.constexpr,
    KH, KW, SH, SW, PH, PW, NPH, TMAX_W, TAP_GROUPS,
    sg_n, sg_c, sg_h, sg_w,
    ss_n, ss_c, ss_h, ss_w,
    sx_n, sx_c, sx_h, sx_w,
    so_g, so_x, so_r, so_s, so_split,
    alpha, gain, clamp, out_scale,
    ITERS_PER_SPLIT, SPLITS,
    TRANSPOSED: tl.constexpr, FLAT_N: tl.constexpr,
    ACT: tl.constexpr, HAS_CLAMP: tl.constexpr, PROLOGUE: tl.constexpr, NEED_BIAS: tl.constexpr,
    SPLIT_W: tl.constexpr, SPLIT_B: tl.constexpr,
    ACC_DTYPE: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    BN_FOLD: tl.constexpr = False,
):
    """dW[cg, cx, r, s] = sum over output positions (n, oh, ow) of
    dZ[n, cg, oh, ow] * X[n, cx, ih(oh, r), iw(ow, s)], for one slice of positions.

    dZ = g * act'(s) (PROLOGUE) is the gradient at the output of the convolution (the
    conv's y side, C_G channels, OH x OW); X is the other side (C_X channels, H x W).
    Rows of the GEMM are dZ's channels, columns (tap, cx), reduction over positions.
    For a transposed convolution the positions of one phase are reduced together: tap
    r reads the dZ positions of phase r mod S only. Results go to gw through so_*; the
    bias gradient, sum of dZ over positions, to gb from the programs of column tile 0
    and the first tap group of each phase (every dZ position belongs to exactly one
    phase).

    SPLIT_W (SPLITS > 1 slices of positions): each program stores its partial weight
    tile to fp32 slot `split` of ws (slot stride so_split, laid out like gw) and the
    last of the SPLITS programs of that tile to arrive sums the slots into gw
    (kernels/_arrival.py). SPLIT_B (SPLITS * NPH > 1): the bias
    partials go to slot (split, phase) of gb_ws, summed into gb the same way by the
    last of the SPLITS * NPH programs that owe the bias of a row tile. Counters: one
    per (row tile, column tile, phase, tap group), then one per row tile.
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_z = tl.program_id(2)
    tap_group = pid_z % TAP_GROUPS
    phase = (pid_z // TAP_GROUPS) % NPH
    split = pid_z // (TAP_GROUPS * NPH)
    ph_h = phase // SW
    ph_w = phase % SW
    q0h, taps_h = _phase_geometry(ph_h, KH, SH, PH, TRANSPOSED)
    q0w, taps_w = _phase_geometry(ph_w, KW, SW, PW, TRANSPOSED)

    ch = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    ch_ok = ch < C_G
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if FLAT_N:
        # Columns (tap, cx) flattened over this phase's taps.
        tap = cols // C_X
        cx = cols - tap * C_X
        th = tap // tl.maximum(taps_w, 1)  # a phase may have no tap (then no column is valid)
        tw = tap - th * taps_w
        col_ok = tap < taps_h * taps_w
        th_b = th[None, :]
        tw_b = tw[None, :]
    else:
        th = tap_group // TMAX_W
        tw = tap_group % TMAX_W
        cx = cols
        # (cx * 0 + ...: a tensor-scalar `&` of comparisons is int32 in the interpreter.)
        col_ok = (cx < C_X) & (cx * 0 + th < taps_h) & (cx * 0 + tw < taps_w)
        th_b = th
        tw_b = tw
    if TRANSPOSED:
        r = ph_h + SH * th_b
        q = ph_w + SW * tw_b
    else:
        r = th_b
        q = tw_b
    # Column tile 0 of tap group 0 owes the bias. (Flags are formed from int sums:
    # the interpreter turns `tensor & scalar-bool` into int32, which a mask rejects.)
    active = tl.max(col_ok.to(tl.int32), axis=0)
    if NEED_BIAS:
        # A program with no column to compute still sums dZ when it owes the bias.
        active += (pid_n + tap_group == 0).to(tl.int32)
    iters = tl.where(active > 0, ITERS_PER_SPLIT, 0)

    rows_total = NB * QH * QW
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    bsum = tl.zeros((BLOCK_M,), dtype=ACC_DTYPE)
    for it in range(0, iters):
        k = (split * ITERS_PER_SPLIT + it) * BLOCK_K + ks
        n = k // (QH * QW)
        i = (k // QW) % QH
        j = k % QW
        oh, ih0 = _positions(i, ph_h, q0h, SH, PH, TRANSPOSED)
        ow, iw0 = _positions(j, ph_w, q0w, SW, PW, TRANSPOSED)
        k_ok = (k < rows_total) & (oh < OH) & (ow < OW)
        g_mask = ch_ok[:, None] & k_ok[None, :]
        g_off = ch[:, None] * sg_c + (n * sg_n + oh * sg_h + ow * sg_w)[None, :]
        s_off = ch[:, None] * ss_c + (n * ss_n + oh * ss_h + ow * ss_w)[None, :]
        if BN_FOLD:
            dz = folded_operand(g_ptr, s_ptr, fx_ptr, fcoef_ptr, g_off, s_off, g_mask, ch, ch_ok, C_G, alpha,
                                ACT, ACC_DTYPE, 0)
        else:
            dz = gradient_operand(g_ptr, s_ptr, g_off, s_off, g_mask, alpha, gain, clamp,
                                  ACT, HAS_CLAMP, PROLOGUE, ACC_DTYPE)
        if NEED_BIAS:
            bsum += tl.sum(dz, axis=1)
        if TRANSPOSED:
            ih = ih0[:, None] - th_b
            iw = iw0[:, None] - tw_b
        else:
            ih = ih0[:, None] + th_b
            iw = iw0[:, None] + tw_b
        x_mask = k_ok[:, None] & col_ok[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        x_off = (n * sx_n)[:, None] + ih * sx_h + iw * sx_w + cx[None, :] * sx_c
        xt = tl.load(x_ptr + x_off, mask=x_mask, other=0.0)
        acc = tl.dot(dz.to(x_ptr.dtype.element_ty), xt, acc, input_precision=DOT_PRECISION, out_dtype=ACC_DTYPE)

    acc = acc * out_scale
    w_off = ch[:, None] * so_g + cx[None, :] * so_x + r * so_r + q * so_s
    w_mask = ch_ok[:, None] & col_ok[None, :]
    owes_bias = ch * 0 + pid_n + tap_group == 0
    if SPLIT_W:
        tl.store(ws_ptr + split * so_split + w_off, acc, mask=w_mask)
    else:
        tl.store(gw_ptr + w_off, acc.to(gw_ptr.dtype.element_ty), mask=w_mask)
    if NEED_BIAS:
        bsum = bsum * out_scale
        if SPLIT_B:
            tl.store(gb_ws_ptr + (split * NPH + phase) * C_G + ch, bsum, mask=ch_ok & owes_bias)
        else:
            tl.store(gb_ptr + ch, bsum.to(gb_ptr.dtype.element_ty), mask=ch_ok & owes_bias)
    if SPLIT_W:
        slices = TAP_GROUPS * NPH  # programs of one split index; pid_z % slices: (phase, tap group)
        tile = (pid_m * tl.num_programs(1) + pid_n) * slices + pid_z % slices
        if arrived_last(counter_ptr + tile, SPLITS):
            total = sum_slots(ws_ptr, w_off, w_mask, so_split, SPLITS)
            tl.store(gw_ptr + w_off, total.to(gw_ptr.dtype.element_ty), mask=w_mask)
            release_counter(counter_ptr + tile)
    if NEED_BIAS and SPLIT_B:
        if pid_n + tap_group == 0:
            bias_counter = counter_ptr + tl.num_programs(0) * tl.num_programs(1) * TAP_GROUPS * NPH + pid_m
            if arrived_last(bias_counter, SPLITS * NPH):
                total = sum_slots(gb_ws_ptr, ch, ch_ok, C_G, SPLITS * NPH)
                tl.store(gb_ptr + ch, total.to(gb_ptr.dtype.element_ty), mask=ch_ok)
                release_counter(bias_counter)


# ----------------------------------------------------------------------------- launchers


def _pair(op, name, v, minimum):
    v = [int(e) for e in v]
    if len(v) != 2 or min(v) < minimum:
        raise ValueError(f"{op}: {name} must be two ints >= {minimum}, got {v}")
    return v


def _check_4d(op, **tensors):
    for name, t in tensors.items():
        if t is not None and t.dim() != 4:
            raise ValueError(f"{op}: {name} must be 4-D [N, C, H, W], got shape {tuple(t.shape)}")


def _weight_for_loads(weight: torch.Tensor) -> torch.Tensor:
    """weight, or a channels_last copy when neither channel dimension has unit stride
    (see the module note: one weight-sized copy buys coalesced weight loads)."""
    if weight.stride(0) != 1 and weight.stride(1) != 1 and weight.shape[0] > 1 and weight.shape[1] > 1:
        return weight.contiguous(memory_format=torch.channels_last)
    return weight


def _plan_single_pixel(a, s, weight, bias, out, z, act, alpha, gain, clamp, prologue, epilogue, out_scale):
    """A transposed convolution of a 1 x 1 input without padding (a generator's latent
    projection; the input gradient of a conv whose output is 1 x 1) is a plain GEMM:
    out[n, (r, s, co)] = sum_c a[n, c] W[c, co, r, s]. Run as such it skips the taps
    that the phase kernel would multiply with padding (15 of 16 for a 4 x 4 kernel).
    With the weight channels_last (one weight-sized copy unless it already is), the
    (r, s, co) of a [C_A, C_Y, kh, kw] weight are contiguous, as are the (oh, ow, co)
    of the channels_last output: both are 2-D matrices for the GEMM kernel.
    Returns the launch, a function of (a, s, weight, bias, out, z)."""
    from . import linear as KL

    nb, c_a = a.shape[:2]
    c_y, kh, kw = out.shape[1], out.shape[2], out.shape[3]
    n = kh * kw * c_y
    w_stride = weight.contiguous(memory_format=torch.channels_last).stride(0)
    y_stride, z_stride = out.stride(0), None if z is None else z.stride(0)
    tile = _tiles.pick("gemm", a.device, a.dtype, nb, n, c_a)
    args = KL._gemm_args(s, weight, bias, z, None, nb, n, c_a, (a.stride(0), a.stride(1)),
                         (s.stride(0), s.stride(1)) if s is not None else (0, 0), (w_stride, 1), (y_stride, 1),
                         act, alpha, gain, clamp, prologue=prologue, epilogue=epilogue, out_scale=out_scale, tile=tile,
                         precision_family="conv")

    def launch(a, s, weight, bias, out, z):
        w_mat = weight.contiguous(memory_format=torch.channels_last).as_strided((c_a, n), (w_stride, 1))
        y_mat = out.as_strided((nb, n), (y_stride, 1))
        z_mat = None if z is None else z.as_strided((nb, n), (z_stride, 1))
        bias_cols = None if bias is None else bias.repeat(kh * kw)  # bias of column (r, s, co)
        KL._launch_gemm(args, a, s, w_mat, bias_cols, y_mat, z_mat, None)

    return launch


def _pixel_padded(t: torch.Tensor, channels: int) -> torch.Tensor:
    """t as dense channels_last with `channels` channels per pixel (zeros beyond t's):
    t itself when it already is (see PIXEL_CHANNELS in _conv_gather_kernel). A 16-bit
    operand of fewer than 4 channels costs one copy the size of t."""
    nb, c, h, w = t.shape
    if c == channels and t.stride() == (h * w * c, 1, w * c, c):
        return t
    # A fresh buffer: F.pad with nothing to pad may hand back t's own (NCHW) view.
    nhwc = t.new_zeros((nb, h, w, channels))
    nhwc[..., :c] = t.permute(0, 2, 3, 1)
    return nhwc.permute(0, 3, 1, 2)


def single_pixel(kernel_transposed, a_hw, padding, out_hw, kernel_hw) -> bool:
    """Whether _plan_gather runs this product as the single-pixel GEMM."""
    return (kernel_transposed and tuple(a_hw) == (1, 1) and list(padding) == [0, 0]
            and tuple(out_hw) == tuple(kernel_hw))


def _plan_gather(a, s, weight, bias, out, z, kernel_transposed, stride, padding,
                 act, alpha, gain, clamp, prologue, epilogue, out_scale, tile=None, bn=None):
    """The launch of the gather kernel (or of the single-pixel GEMM) for these
    arguments, as a function of the tensors (a, s, weight, bias, out, z[, bn tensors,
    bn scalars]): tile, grid and every scalar argument are worked out here, once per
    call signature. bn: the batch-norm options of _conv_gather_kernel (BN_FOLD,
    BN_EPILOGUE, E_ACT, E_HAS_WEIGHT) for a conv -> batch norm -> act block."""
    nb, c_a, h, w = a.shape
    c_y, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    kh, kw = weight.shape[2], weight.shape[3]
    if single_pixel(kernel_transposed, (h, w), padding, (oh, ow), (kh, kw)):
        if bn is not None:
            raise ValueError("a batch-norm fusion has no single-pixel GEMM form: run it unfused")
        return _plan_single_pixel(a, s, weight, bias, out, z, act, alpha, gain, clamp, prologue, epilogue, out_scale)
    sh, sw = stride
    ph, pw = padding
    loaded = _weight_for_loads(weight)
    repack = loaded is not weight
    # Kernel-transposed: weight [C_A, C_Y, kh, kw]; conv: weight [C_Y, C_A, kh, kw].
    k_dim, n_dim = (0, 1) if kernel_transposed else (1, 0)
    if kernel_transposed:
        qh, qw, phases = cdiv(oh, sh), cdiv(ow, sw), sh * sw
        taps = cdiv(kh, sh) * cdiv(kw, sw)
    else:
        qh, qw, phases, taps = oh, ow, 1, kh * kw
    rows = nb * qh * qw
    # (m, n, k) of one phase's GEMM.
    if tile is None:
        # With FASTGAN_AUTOTUNE=1 on a GPU: this launch, timed with each candidate tile.
        def timed(t):
            o = torch.empty_like(out, device=a.device)
            oz = None if z is None else torch.empty_like(z, device=a.device)
            _plan_gather(a, s, weight, bias, o, oz, kernel_transposed, stride, padding, act, alpha,
                         gain, clamp, prologue, epilogue, out_scale, tile=t)(a, s, weight, bias, o, oz)

        tile = _tiles.pick("conv", a.device, a.dtype, rows, c_y, taps * c_a, bench=_tiles.launch_timer(timed))
    flat_k = c_a < tile.BLOCK_K
    pixel_channels = 0
    if flat_k and a.element_size() < 4:
        pixel_channels = triton.next_power_of_2(c_a)
        a, s = _pixel_padded(a, pixel_channels), None if s is None else _pixel_padded(s, pixel_channels)
    s_ = s if s is not None else a
    grid = (cdiv(rows, tile.BLOCK_M) * cdiv(c_y, tile.BLOCK_N), phases)
    scalars = (
        nb, c_a, h, w, c_y, oh, ow, qh, qw,
        kh, kw, sh, sw, ph, pw,
        *a.stride(), *s_.stride(),
        loaded.stride(k_dim), loaded.stride(n_dim), loaded.stride(2), loaded.stride(3),
        *out.stride(), bias.stride(0) if bias is not None else 0,
        float(alpha), float(gain), clamp_arg(clamp, act, s), float(out_scale),
    )
    constexprs = dict(
        TRANSPOSED=kernel_transposed, FLAT_K=flat_k, PIXEL_CHANNELS=pixel_channels,
        ACT=act, HAS_CLAMP=clamp is not None,
        PROLOGUE=prologue, EPILOGUE=epilogue, HAS_BIAS=bias is not None, STORE_Z=z is not None,
        ACC_DTYPE=acc_type(a.dtype), DOT_PRECISION=_tiles.dot_precision(a.dtype, "conv"),
        BLOCK_M=tile.BLOCK_M, BLOCK_N=tile.BLOCK_N, BLOCK_K=tile.BLOCK_K, GROUP_M=tile.GROUP_M,
        **tile.launch_options(),
    )
    if bn is not None:
        constexprs.update(bn, BLOCK_P=max(1, 1024 // tile.BLOCK_N))
    # The reduction slots and counters of a BN epilogue: one per (row tile, phase), one
    # ticket counter per column tile.
    row_tiles = cdiv(rows, tile.BLOCK_M)
    epilogue_slots, col_tiles = row_tiles * phases, cdiv(c_y, tile.BLOCK_N)
    gather = DirectLaunch(_conv_gather_kernel, grid)

    def launch(a, s, weight, bias, out, z, bn_tensors=(), bn_scalars=(0.0, 0.0, 0.0)):
        """bn_tensors: (fx, fcoef, part, stat, es, ex, emean, evar, ew, egw, egb), None
        where unused; part from epilogue_partials."""
        if repack:
            weight = weight.contiguous(memory_format=torch.channels_last)
        fx = bn_tensors[0] if bn_tensors else None
        if pixel_channels:
            a, s = _pixel_padded(a, pixel_channels), None if s is None else _pixel_padded(s, pixel_channels)
            fx = None if fx is None else _pixel_padded(fx, pixel_channels)
        s = s if s is not None else a
        if bn_tensors:
            rest = bn_tensors[1:]
            counters = tile_counters(col_tiles, out.device) if rest[1] is not None else None
            bn_args = [fx, rest[0], rest[1], rest[2], counters, *rest[3:]]
            bn_args = [t if t is not None else out for t in bn_args]
        else:
            bn_args = [out] * 12
        try:
            gather(
                a, s, weight, bias if bias is not None else out, out,
                z if z is not None else out, *bn_args, *scalars, *bn_scalars, **constexprs,
            )
        except OutOfResources as error:
            raise _tiles.resource_error("conv gather kernel", constexprs, out.device, error) from error

    launch.epilogue_slots = epilogue_slots
    return launch


def _plan_fwd(x, weight, bias, stride, padding, output_padding, transposed, act, alpha, gain, clamp):
    """Checks and launch of conv_fwd: (y shape, store z, launch)."""
    op = "conv_fwd"
    check_tensors(op, x=x, weight=weight, bias=bias)
    _check_4d(op, x=x, weight=weight)
    stride, padding = _pair(op, "stride", stride, 1), _pair(op, "padding", padding, 0)
    output_padding = _pair(op, "output_padding", output_padding, 0)
    c_in_w, c_out = (weight.shape[0], weight.shape[1]) if transposed else (weight.shape[1], weight.shape[0])
    if c_in_w != x.shape[1]:
        raise ValueError(f"{op}: weight {tuple(weight.shape)} expects {c_in_w} input channels, x has {x.shape[1]}")
    if bias is not None:
        check_shape(op, "bias", bias, (c_out,))
    oh, ow = output_size(x.shape[2:], weight.shape[2:], stride, padding, output_padding, transposed)
    if oh < 1 or ow < 1:
        raise ValueError(f"{op}: the output would be {oh} x {ow}")
    shape = (x.shape[0], c_out, oh, ow)
    y = torch.empty(shape, dtype=x.dtype, device="meta", memory_format=torch.channels_last)
    store_z = needs_preactivation(act)
    launch = _plan_gather(x, None, weight, bias, y, y if store_z else None, transposed, stride, padding,
                          act, alpha, gain, clamp, prologue=False, epilogue=True, out_scale=1.0)
    return output_spec(shape, torch.channels_last), store_z, launch


def conv_fwd(x, weight, bias, stride, padding, output_padding, transposed, act, alpha, gain, clamp):
    """(y, z): y = clamp(act(conv(x, w) + b) * gain) channels_last; z the pre-activation
    for silu (channels_last), else an empty tensor. conv is conv_transpose2d when
    `transposed` (weight [C_in, C_out, kh, kw]), conv2d otherwise ([C_out, C_in, kh, kw])."""
    plan = _plans.replay("conv_fwd")
    if plan is None:
        key = ("conv_fwd", _plans.meta(x), _plans.meta(weight), _plans.meta(bias), tuple(stride), tuple(padding),
               tuple(output_padding), transposed, act, alpha, gain, clamp)
        plan = _plans.record("conv_fwd", _plans.get(key) or _plans.put(
            key, _plan_fwd(x, weight, bias, stride, padding, output_padding, transposed, act, alpha, gain, clamp)))
    spec, store_z, launch = plan
    y = new_strided(spec, x.dtype, x.device)
    z = new_strided(spec, x.dtype, x.device) if store_z else None
    launch(x, None, weight, bias, y, z)
    return y, (z if z is not None else x.new_empty(0))


def _plan_grad_input(grad, s, weight, input_hw, stride, padding, transposed, act, alpha, gain, clamp):
    """Checks and launch of conv_grad_input: (gx shape, uses s, launch)."""
    op = "conv_grad_input"
    s = saved_or_none(op, s, grad, act, clamp)
    check_tensors(op, grad=grad, s=s, weight=weight)
    _check_4d(op, grad=grad, s=s, weight=weight)
    stride, padding = _pair(op, "stride", stride, 1), _pair(op, "padding", padding, 0)
    c_out_w, c_in = (weight.shape[1], weight.shape[0]) if transposed else (weight.shape[0], weight.shape[1])
    if grad.shape[1] != c_out_w:
        raise ValueError(f"{op}: grad has {grad.shape[1]} channels, weight {tuple(weight.shape)} produces {c_out_w}")
    h, w = _pair(op, "input_hw", input_hw, 1)
    expect = output_size((h, w), weight.shape[2:], stride, padding, [0, 0], transposed)
    # A transposed convolution's output may be up to stride - 1 larger (output_padding).
    slack = [grad.shape[2 + d] - expect[d] for d in range(2)]
    if any(e < 0 or e >= (stride[d] if transposed else 1) for d, e in enumerate(slack)):
        raise ValueError(f"{op}: grad is {tuple(grad.shape[2:])}, which a {h} x {w} input with this "
                         f"geometry does not produce (expected {tuple(expect)})")
    shape = (grad.shape[0], c_in, h, w)
    gx = torch.empty(shape, dtype=grad.dtype, device="meta", memory_format=torch.channels_last)
    prologue = s is not None
    launch = _plan_gather(grad, s, weight, None, gx, None, not transposed, stride, padding,
                          act, alpha, gain, clamp, prologue=prologue, epilogue=False,
                          out_scale=1.0 if prologue else gain)
    return output_spec(shape, torch.channels_last), prologue, launch


def conv_grad_input(grad, s, weight, input_hw, stride, padding, transposed, act, alpha, gain, clamp):
    """dL/dx of conv_fwd (channels_last), given dL/dy and the saved s: the transposed
    operation (conv2d <-> conv_transpose2d) of dL/dz = dL/dy * act'(s), same weight."""
    plan = _plans.replay("conv_grad_input")
    if plan is None:
        key = ("conv_grad_input", _plans.meta(grad), _plans.meta(s), _plans.meta(weight), tuple(input_hw),
               tuple(stride), tuple(padding), transposed, act, alpha, gain, clamp)
        plan = _plans.record("conv_grad_input", _plans.get(key) or _plans.put(
            key, _plan_grad_input(grad, s, weight, input_hw, stride, padding, transposed, act, alpha, gain, clamp)))
    spec, prologue, launch = plan
    gx = new_strided(spec, grad.dtype, grad.device)
    launch(grad, s if prologue else None, weight, None, gx, None)
    return gx


def _check_grad_weight(op, grad, s, x, kernel_hw, stride, padding, act, alpha, gain, clamp):
    s = saved_or_none(op, s, grad, act, clamp)
    check_tensors(op, grad=grad, s=s, x=x)
    _check_4d(op, grad=grad, s=s, x=x)
    _pair(op, "stride", stride, 1), _pair(op, "padding", padding, 0), _pair(op, "kernel_hw", kernel_hw, 1)
    if grad.shape[0] != x.shape[0]:
        raise ValueError(f"{op}: grad has batch {grad.shape[0]}, x has {x.shape[0]}")
    return True


def _plan_grad_weight(grad, s, x, kernel_hw, stride, padding, transposed, act, alpha, gain, clamp, need_bias,
                      fold=False):
    """Launch of conv_grad_weight (fold: of conv_grad_weight_bn, BN_FOLD with s given), a
    function of (grad, s, x[, fx, coef]): tile, split, grid and every scalar argument are
    worked out here, once per call signature. The caller has checked the arguments."""
    prologue = needs_saved(act, clamp) and not fold
    uses_s = prologue or fold
    kh, kw = kernel_hw
    nb, c_g, oh, ow = grad.shape
    c_x, h, w = x.shape[1], x.shape[2], x.shape[3]
    sh, sw = stride
    gw_shape = (c_x, c_g, kh, kw) if transposed else (c_g, c_x, kh, kw)
    gw_meta = torch.empty(gw_shape, dtype=x.dtype, device="meta")
    if transposed:
        qh, qw, phases = cdiv(oh, sh), cdiv(ow, sw), sh * sw
        tmax_h, tmax_w = cdiv(kh, sh), cdiv(kw, sw)
    else:
        qh, qw, phases, tmax_h, tmax_w = oh, ow, 1, kh, kw
    positions = nb * qh * qw
    tile = _tiles.pick("conv_wgrad", x.device, x.dtype, c_g, tmax_h * tmax_w * c_x, positions)
    flat_n = c_x < tile.BLOCK_N
    if flat_n:
        col_tiles, tap_groups = cdiv(tmax_h * tmax_w * c_x, tile.BLOCK_N), 1
    else:
        col_tiles, tap_groups = cdiv(c_x, tile.BLOCK_N), tmax_h * tmax_w
    row_tiles = cdiv(c_g, tile.BLOCK_M)
    k_iters = cdiv(positions, tile.BLOCK_K)
    split = _tiles.split_count(tile, x.device, row_tiles * col_tiles * tap_groups * phases, k_iters)
    iters_per_split = cdiv(k_iters, split)
    split = cdiv(k_iters, iters_per_split)  # no empty slice
    # gw's strides in the kernel's (dZ channel, X channel, r, s) order.
    g_dim, x_dim = (1, 0) if transposed else (0, 1)
    so = (gw_meta.stride(g_dim), gw_meta.stride(x_dim), gw_meta.stride(2), gw_meta.stride(3), gw_meta.numel())
    split_b = bool(need_bias) and split * phases > 1
    w_tiles = row_tiles * col_tiles * tap_groups * phases
    counted = split > 1 or split_b
    grid = (row_tiles, col_tiles, split * phases * tap_groups)
    scalars = (
        nb, c_g, c_x, h, w, oh, ow, qh, qw,
        kh, kw, sh, sw, padding[0], padding[1], phases, tmax_w, tap_groups,
        *grad.stride(), *(s if uses_s else grad).stride(), *x.stride(),
        *so,
        float(alpha), float(gain), clamp_arg(clamp, act, s if uses_s else None), 1.0 if prologue else float(gain),
        iters_per_split, split,
    )
    constexprs = dict(
        TRANSPOSED=bool(transposed), FLAT_N=flat_n,
        ACT=act, HAS_CLAMP=clamp is not None, PROLOGUE=prologue, NEED_BIAS=bool(need_bias),
        SPLIT_W=split > 1, SPLIT_B=split_b,
        ACC_DTYPE=acc_type(x.dtype), DOT_PRECISION=_tiles.dot_precision(x.dtype, "conv"),
        BLOCK_M=tile.BLOCK_M, BLOCK_N=tile.BLOCK_N, BLOCK_K=tile.BLOCK_K,
        **({"BN_FOLD": True} if fold else {}), **tile.launch_options(),
    )
    device, g_dtype, x_dtype = x.device, grad.dtype, x.dtype
    gw_spec, gb_spec = output_spec(gw_shape), output_spec((c_g,))
    gw_numel = gw_meta.numel()
    # The bias partials follow the weight's in the scratch (one accumulator dtype: grad
    # and x share one dtype, _check_grad_weight).
    gb_offset = partials_end(split, gw_numel) if split > 1 else 0
    wgrad = DirectLaunch(_conv_wgrad_kernel, grid)

    def launch(grad, s, x, fx=None, coef=None):
        gw = new_strided(gw_spec, x_dtype, device)
        gb = new_strided(gb_spec, g_dtype, device) if need_bias else None
        # Split: fp32 partial slots laid out like the contiguous gw, summed in the launch.
        ws = partials_buffer(split, gw_numel, x_dtype, device) if split > 1 else gw
        gb_ws = partials_buffer(split * phases, c_g, g_dtype, device, gb_offset) if split_b else gw
        counters = tile_counters(w_tiles + row_tiles, device) if counted else gw
        try:
            wgrad(
                grad, s if uses_s else grad, x, gw, gb if gb is not None else gw, ws, gb_ws, counters,
                fx if fold else gw, coef if fold else gw,
                *scalars, **constexprs,
            )
        except OutOfResources as error:
            raise _tiles.resource_error("conv weight-gradient kernel", constexprs, device, error) from error
        return gw, gb

    return launch


def conv_grad_weight(grad, s, x, kernel_hw, stride, padding, transposed, act, alpha, gain, clamp, need_bias):
    """(dL/dw, dL/db) of conv_fwd: dL/dw contiguous in the weight's layout, dL/db 1-D
    (an empty tensor unless need_bias), both from one pass over dL/dy."""
    launch = _plans.replay("conv_grad_weight")
    if launch is None:
        key = ("conv_grad_weight", _plans.meta(grad), _plans.meta(s), _plans.meta(x), tuple(kernel_hw), tuple(stride),
               tuple(padding), transposed, act, alpha, gain, clamp, need_bias)
        launch = _plans.get(key)
        if launch is None:
            _check_grad_weight("conv_grad_weight", grad, s, x, kernel_hw, stride, padding, act, alpha, gain, clamp)
            launch = _plans.put(key, _plan_grad_weight(
                grad, s, x, kernel_hw, stride, padding, transposed, act, alpha, gain, clamp, need_bias))
        _plans.record("conv_grad_weight", launch)
    gw, gb = launch(grad, s, x)
    return gw, (gb if gb is not None else grad.new_empty(0))


# ----------------------------------------------------------------------------- conv -> batch norm blocks
# fastgan.ops.conv_bn: the conv of a conv -> batch norm -> act block with the batch
# norm's statistics in its forward epilogue and its input gradient folded into its
# backward loads (kernels/_conv_bn.py). Each runs on the gather kernel only: a product
# that would run as the single-pixel GEMM (single_pixel) is run unfused by the caller.


def _plan_fwd_bn_stats(x, weight, bias, stride, padding, output_padding, transposed):
    (shape, _), _, _ = _plan_fwd(x, weight, bias, stride, padding, output_padding, transposed, "linear", 0.2, 1.0,
                                 None)
    y = torch.empty(shape, dtype=x.dtype, device="meta", memory_format=torch.channels_last)
    launch = _plan_gather(x, None, weight, bias, y, None, transposed, _pair("conv_fwd", "stride", stride, 1),
                          _pair("conv_fwd", "padding", padding, 0), "linear", 0.2, 1.0, None,
                          prologue=False, epilogue=True, out_scale=1.0, bn=dict(BN_EPILOGUE="stats"))
    c = shape[1]
    return (output_spec(shape, torch.channels_last), output_spec((3, c)), 3 * launch.epilogue_slots * c,
            accumulator_dtype(x.dtype), launch)


def conv_fwd_bn_stats(x, weight, bias, stride, padding, output_padding, transposed):
    """(y, stats): y = conv(x, w) + b channels_last, as conv_fwd with act linear, and
    its per-channel batch statistics stats [3, C_out] in the accumulator dtype (mean,
    biased var, mean - y[0, c, 0, 0], what batch_norm.bn_normalize takes), in one
    launch. y must not be empty."""
    plan = _plans.replay("conv_fwd_bn_stats")
    if plan is None:
        key = ("conv_fwd_bn_stats", _plans.meta(x), _plans.meta(weight), _plans.meta(bias), tuple(stride),
               tuple(padding), tuple(output_padding), transposed)
        plan = _plans.record("conv_fwd_bn_stats", _plans.get(key) or _plans.put(
            key, _plan_fwd_bn_stats(x, weight, bias, stride, padding, output_padding, transposed)))
    y_spec, stats_spec, part_count, acc, launch = plan
    device = x.device
    y = new_strided(y_spec, x.dtype, device)
    stats = new_strided(stats_spec, acc, device)
    part = scratch(part_count, acc, device)
    launch(x, None, weight, bias, y, None, (None, None, part, stats, None, None, None, None, None, None, None))
    return y, stats


def _plan_grad_input_bn(grad, s, weight, input_hw, stride, padding, transposed, act, alpha, link_act):
    (shape, _), _, _ = _plan_grad_input(grad, None, weight, input_hw, stride, padding, transposed, "linear", 0.2,
                                        1.0, None)
    if tuple(s.shape) != tuple(grad.shape):
        raise ValueError(f"conv_grad_input_bn: s must be shaped like grad {tuple(grad.shape)}, got {tuple(s.shape)}")
    gx = torch.empty(shape, dtype=grad.dtype, device="meta", memory_format=torch.channels_last)
    bn = dict(BN_FOLD=True)
    if link_act is not None:
        bn.update(BN_EPILOGUE="sums", E_ACT=link_act[0], E_HAS_WEIGHT=link_act[1])
    launch = _plan_gather(grad, s, weight, None, gx, None, not transposed, _pair("conv_grad_input", "stride", stride, 1),
                          _pair("conv_grad_input", "padding", padding, 0), act, alpha, 1.0, None,
                          prologue=False, epilogue=False, out_scale=1.0, bn=bn)
    c = shape[1]
    # The linked block's outputs: coefficients [4, C], its weight and bias gradients
    # [C], the epilogue's partial sums.
    link_specs = (output_spec((4, c)), output_spec((c,)), 2 * launch.epilogue_slots * c)
    return output_spec(shape, torch.channels_last), accumulator_dtype(grad.dtype), link_specs, launch


def conv_grad_input_bn(grad, s, fx, coef, weight, input_hw, stride, padding, transposed, act, alpha, link=None):
    """dL/dx of a conv -> batch norm -> act block (channels_last), given dL/dy of the
    block, the saved s of its act (fx itself for act linear), fx the conv output (s's
    strides) and the fold coefficients [4, C] of batch_norm.bn_fold_coefficients.

    link = (es, ex, mean, var, weight, eps, act, alpha) of the block that produced
    this conv's input x (es, ex channels_last like x): its batch-norm sums are taken
    in the same launch's epilogue; then returns (gx, (coef, gw, gb)) of that block,
    else (gx, None)."""
    name = "conv_grad_input_bn" if link is None else "conv_grad_input_bn+link"  # its tape entry
    plan = _plans.replay(name)
    if plan is None:
        link_act = None if link is None else (link[6], link[4] is not None)
        key = ("conv_grad_input_bn", _plans.meta(grad), _plans.meta(s), _plans.meta(fx), _plans.meta(weight),
               tuple(input_hw), tuple(stride), tuple(padding), transposed, act, alpha, link_act)
        plan = _plans.record(name, _plans.get(key) or _plans.put(
            key, _plan_grad_input_bn(grad, s, weight, input_hw, stride, padding, transposed, act, alpha, link_act)))
    gx_spec, acc, (coef_spec, vec_spec, part_count), launch = plan
    device = grad.device
    gx = new_strided(gx_spec, grad.dtype, device)
    if link is None:
        launch(grad, s, weight, None, gx, None, (fx, coef, None, None, None, None, None, None, None, None, None),
               (0.0, 0.0, float(alpha)))
        return gx, None
    es, ex, mean, var, e_weight, eps, e_act, e_alpha = link
    pdtype = ex.dtype if e_weight is None else e_weight.dtype
    e_coef = new_strided(coef_spec, acc, device)
    e_gw, e_gb = new_strided(vec_spec, pdtype, device), new_strided(vec_spec, pdtype, device)
    part = scratch(part_count, acc, device)
    eps_hi, eps_lo = split_float32(eps)
    launch(grad, s, weight, None, gx, None,
           (fx, coef, part, e_coef, es if e_act != "linear" else ex, ex, mean, var, e_weight, e_gw, e_gb),
           (eps_hi, eps_lo, float(e_alpha)))
    return gx, (e_coef, e_gw, e_gb)


def conv_grad_weight_bn(grad, s, fx, coef, x, kernel_hw, stride, padding, transposed, act, alpha, need_bias):
    """(dL/dw, dL/db) of a conv -> batch norm -> act block's conv (conv_grad_weight's
    layout), given what conv_grad_input_bn takes; dL/db is None unless need_bias."""
    op = "conv_grad_weight_bn"
    launch = _plans.replay(op)
    if launch is None:
        key = (op, _plans.meta(grad), _plans.meta(s), _plans.meta(fx), _plans.meta(x), tuple(kernel_hw),
               tuple(stride), tuple(padding), transposed, act, alpha, need_bias)
        launch = _plans.get(key)
        if launch is None:
            _check_grad_weight(op, grad, None, x, kernel_hw, stride, padding, "linear", 0.2, 1.0, None)
            if tuple(s.shape) != tuple(grad.shape) or s.stride() != fx.stride():
                raise ValueError(f"{op}: s and fx must be shaped like grad {tuple(grad.shape)} with equal strides")
            launch = _plans.put(key, _plan_grad_weight(grad, s, x, kernel_hw, stride, padding, transposed, act,
                                                       alpha, 1.0, None, need_bias, fold=True))
        _plans.record(op, launch)
    return launch(grad, s, x, fx, coef)
