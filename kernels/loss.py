"""Fused adversarial losses: one launch computes the per-element terms, their reduction
and d loss / d logits, for the discriminator (real and fake logits together, of any two
sizes) or the generator. Same functions, signatures and outputs as
fastgan.reference.loss (d_loss_fwd, g_loss_fwd); the kinds are its LOSS_KINDS table.

Layout: logits in their memory order, tiles of BLOCK elements, T tiles per program.
Knobs: LossConfig (block, max_programs, reduce_block). The deterministic cross-program
sum and the overflow-free numerics: docs/kernels.md, "Loss kernel".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from fastgan._dtypes import SUPPORTED, SUPPORTED_NAMES
from fastgan.reference.loss import KINDS, REDUCTIONS

from ._arrival import arrived_last, release_counter, tile_counters
from ._common import (
    LaunchConfigs, accumulator_dtype, accumulator_type, is_dense, new_output, new_output_like, split_float32,
)
from . import _plans
from ._launch import DirectLaunch
from ._plans import cdiv



@dataclass(frozen=True)
class LossConfig:
    block: int  # logits per tile
    max_programs: int  # beyond this many tiles, each program loops over several
    reduce_block: int  # partials summed per step by the last program
    num_warps: int


# Untuned: 2048 logits per tile and up to 1024 programs (16M logits = 8 tiles a program).
GPU_CONFIG = LossConfig(block=2048, max_programs=1024, reduce_block=1024, num_warps=8)
# The interpreter runs programs one after another: few large tiles.
INTERPRETER_CONFIG = LossConfig(block=8192, max_programs=4, reduce_block=64, num_warps=4)
_CONFIGS = LaunchConfigs(GPU_CONFIG, INTERPRETER_CONFIG)
config = _CONFIGS.current
configured = _CONFIGS.configured  # tests replace fields to reach every path


@triton.jit
def log1p_unit(e, FP64: tl.constexpr):
    """log(1 + e) for 0 <= e <= 1, to a few ulps: 2 * atanh(s) with s = e / (2 + e) <= 1/3,
    summed as s * (1 + q/3 + q^2/5 + ...), q = s^2 <= 1/9. The omitted tail is below
    q^N / (2N + 1) * 9/8 relative: N = 8 terms for float32, 17 for float64."""
    s = e / (2.0 + e)
    q = s * s
    if FP64:
        p = _odd_series(q, 17)
    else:
        p = _odd_series(q, 8)
    return 2.0 * s * p


@triton.jit
def _odd_series(q, N: tl.constexpr):
    """1 + q/3 + q^2/5 + ... + q^(N-1)/(2N - 1), by Horner's rule."""
    p = tl.zeros_like(q) + 1.0 / (2 * N - 1)
    for j in tl.static_range(N - 1):
        p = p * q + 1.0 / (2 * (N - 2 - j) + 1)
    return p


@triton.jit
def term_and_derivative(t, KIND: tl.constexpr, SIDE: tl.constexpr, label_hi, label_lo, FP64: tl.constexpr):
    """(loss term, d term / d t) per element for one side ("d_real", "d_fake", "g"),
    in t's dtype. The real label is label_hi + label_lo (two float32 scalars, so a
    float64 kernel sees it to 48 bits)."""
    zero = tl.zeros_like(t)  # tensor-typed constants: float64 stays float64
    one = zero + 1.0
    if KIND == "lsgan":
        if SIDE == "d_real":
            d = (t - label_hi) - label_lo
        elif SIDE == "d_fake":
            d = t
        else:
            d = t - 1.0
        term = 0.5 * d * d
    elif KIND == "hinge":
        if SIDE == "d_real":
            term = tl.maximum(1.0 - t, zero)
            d = tl.where(t < 1.0, -one, zero)
        elif SIDE == "d_fake":
            term = tl.maximum(1.0 + t, zero)
            d = tl.where(t > -1.0, one, zero)
        else:
            term = -t
            d = -one
    elif KIND == "wasserstein":
        if SIDE == "d_fake":
            term = t
            d = one
        else:
            term = -t
            d = -one
    else:  # nonsaturating, minimax: logistic terms from e = exp(-|t|) <= 1
        e = tl.exp(-tl.abs(t))
        lp = log1p_unit(e, FP64)
        r = 1.0 / (1.0 + e)
        er = e * r
        nonneg = t >= 0.0
        sig = tl.where(nonneg, r, er)  # sigmoid(t)
        sig_neg = tl.where(nonneg, er, r)  # sigmoid(-t), not 1 - sigmoid(t)
        softplus = tl.maximum(t, zero) + lp
        softplus_neg = tl.maximum(-t, zero) + lp
        if SIDE == "d_real":
            c = (one - label_hi) - label_lo  # 1 - real_label
            term = softplus_neg + c * t
            d = c - sig_neg
        elif SIDE == "d_fake":
            term = softplus
            d = sig
        elif KIND == "nonsaturating":
            term = softplus_neg
            d = -sig_neg
        else:
            term = -softplus
            d = -sig
    return term, d


@triton.jit
def _side_tiles(
    x_ptr, grad_ptr, terms_ptr, n, first_tile, num_tiles, label_hi, label_lo,
    KIND: tl.constexpr, SIDE: tl.constexpr, REDUCTION: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr,
):
    """Terms and gradients of tiles [first_tile, first_tile + num_tiles) of one side;
    returns the sum of the terms (0 for reduction 'none', where they are stored)."""
    lanes = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], ACC)
    for i in range(0, num_tiles):
        offs = (first_tile + i).to(tl.int64) * BLOCK + lanes
        mask = offs < n
        t = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
        term, d = term_and_derivative(t, KIND, SIDE, label_hi, label_lo, ACC == tl.float64)
        if REDUCTION == "mean":
            d = d / n
        tl.store(grad_ptr + offs, d.to(grad_ptr.dtype.element_ty), mask=mask)
        if REDUCTION == "none":
            tl.store(terms_ptr + offs, term, mask=mask)
        else:
            acc += tl.where(mask, term, 0.0)
    return tl.sum(acc, axis=0)


@triton.jit
def _store_loss(out_ptr, total, n, REDUCTION: tl.constexpr):
    if REDUCTION == "mean":
        total = total / n
    tl.store(out_ptr, total)


@triton.jit
def _sum_partials(ptr, count, REDUCE_BLOCK: tl.constexpr):
    """Sum of ptr[0:count] in a fixed order: fixed chunks, then a fixed tree."""
    lanes = tl.arange(0, REDUCE_BLOCK)
    acc = tl.zeros([REDUCE_BLOCK], ptr.dtype.element_ty)
    for start in range(0, count, REDUCE_BLOCK):
        idx = start + lanes
        acc += tl.load(ptr + idx, mask=idx < count, other=0.0, cache_modifier=".cg")
    return tl.sum(acc, axis=0)


@triton.jit
def _adversarial_loss_kernel(
    a_ptr, a_grad_ptr, a_terms_ptr, a_out_ptr, n_a, tiles_a,
    b_ptr, b_grad_ptr, b_terms_ptr, b_out_ptr, n_b, tiles_b,
    partials_ptr, counter_ptr, tiles_per_program, label_hi, label_lo,
    KIND: tl.constexpr, SIDE_A: tl.constexpr, SIDE_B: tl.constexpr, REDUCTION: tl.constexpr,
    ONE_PROGRAM: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr, REDUCE_BLOCK: tl.constexpr,
):
    """Side A (always) and side B (unless SIDE_B == "none") of one loss; see the module
    docstring for the work split and the cross-program step."""
    pid = tl.program_id(0)
    first = pid * tiles_per_program
    part_a = _side_tiles(
        a_ptr, a_grad_ptr, a_terms_ptr, n_a, first, tl.maximum(tl.minimum(tiles_a - first, tiles_per_program), 0),
        label_hi, label_lo, KIND, SIDE_A, REDUCTION, ACC, BLOCK,
    )
    if SIDE_B != "none":
        part_b = _side_tiles(
            b_ptr, b_grad_ptr, b_terms_ptr, n_b, first, tl.maximum(tl.minimum(tiles_b - first, tiles_per_program), 0),
            label_hi, label_lo, KIND, SIDE_B, REDUCTION, ACC, BLOCK,
        )
    if REDUCTION != "none":
        if ONE_PROGRAM:
            _store_loss(a_out_ptr, part_a, n_a, REDUCTION)
            if SIDE_B != "none":
                _store_loss(b_out_ptr, part_b, n_b, REDUCTION)
        else:
            programs = tl.num_programs(0)
            tl.store(partials_ptr + pid, part_a)
            if SIDE_B != "none":
                tl.store(partials_ptr + programs + pid, part_b)
            # Release this program's partials, acquire everyone's (module docstring).
            if arrived_last(counter_ptr, programs):
                _store_loss(a_out_ptr, _sum_partials(partials_ptr, programs, REDUCE_BLOCK), n_a, REDUCTION)
                if SIDE_B != "none":
                    total_b = _sum_partials(partials_ptr + programs, programs, REDUCE_BLOCK)
                    _store_loss(b_out_ptr, total_b, n_b, REDUCTION)
                release_counter(counter_ptr)


def _check_logits(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
    if t.dtype not in SUPPORTED:
        raise TypeError(f"{name} must be {SUPPORTED_NAMES}, got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if t.numel() >= 2**31:
        raise ValueError(f"{name} has {t.numel()} elements; at most 2**31 - 1 are supported")


def _check_args(kind: str, reduction: str) -> None:
    # Kept below the public check: an unknown kind or reduction would compile a kernel
    # that silently computes another loss (the constexpr branches' last case).
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


class _Side:
    """One side's logits in a dense layout and its outputs, allocated with the same
    strides (empty_like), so that the kernel walks input and outputs in memory order."""

    def __init__(self, logits: torch.Tensor, reduction: str, block: int):
        if is_dense(logits):
            self.logits = logits
        else:  # a strided view: a dense copy laid out like the outputs below
            self.logits = torch.empty_like(logits)
            self.logits.copy_(logits)
        acc = accumulator_dtype(logits.dtype)
        self.grad = new_output_like(logits)
        self.terms = new_output_like(logits, acc) if reduction == "none" else self.grad
        self.out = new_output((), acc, logits.device) if reduction != "none" else self.terms
        assert self.grad.stride() == self.logits.stride() and self.terms.stride() == self.logits.stride()
        self.n = logits.numel()
        self.tiles = cdiv(self.n, block)


def _launch(kind, reduction, side_a: _Side, name_a: str, side_b: _Side | None, name_b: str, real_label: float):
    cfg = config()
    most_tiles = max(side_a.tiles, side_b.tiles if side_b is not None else 0)
    tiles_per_program = cdiv(most_tiles, cfg.max_programs)
    programs = cdiv(most_tiles, tiles_per_program)
    one_program = programs == 1
    acc = side_a.out.dtype if reduction != "none" else side_a.terms.dtype
    device = side_a.logits.device
    if one_program or reduction == "none":
        partials = counter = side_a.out
    else:
        partials = torch.empty(2 * programs, dtype=acc, device=device)
        counter = tile_counters(1, device)
    b = side_b if side_b is not None else side_a
    label_hi, label_lo = split_float32(real_label)
    # One DirectLaunch per launch signature: everything but the tensors and the label.
    key = ("loss_launch", kind, reduction, name_a, name_b, side_b is None, side_a.n, side_a.tiles, b.n, b.tiles,
           programs, tiles_per_program, side_a.logits.dtype, device, cfg.block, cfg.reduce_block, cfg.num_warps)
    launch = _plans.get(key) or _plans.put(key, DirectLaunch(_adversarial_loss_kernel, (programs,)))
    launch(
        side_a.logits, side_a.grad, side_a.terms, side_a.out, side_a.n, side_a.tiles,
        b.logits, b.grad, b.terms, b.out, b.n, b.tiles,
        partials, counter, tiles_per_program, label_hi, label_lo,
        KIND=kind, SIDE_A=name_a, SIDE_B=name_b if side_b is not None else "none", REDUCTION=reduction,
        ONE_PROGRAM=one_program, ACC=accumulator_type(side_a.logits.dtype),
        BLOCK=cfg.block, REDUCE_BLOCK=cfg.reduce_block, num_warps=cfg.num_warps,
    )


def d_loss_fwd(real: torch.Tensor, fake: torch.Tensor, kind: str, real_label: float, reduction: str):
    """(real part, fake part, d/d real, d/d fake) of the discriminator loss, in one
    launch. Parts are 0-d for 'mean'/'sum', per-element terms for 'none' (float32 for
    16-bit logits); gradients in the logits' dtype and strides."""
    _check_logits("real", real)
    _check_logits("fake", fake)
    _check_args(kind, reduction)
    if real.device != fake.device or real.dtype != fake.dtype:
        raise ValueError(
            f"real and fake must share device and dtype, got {real.device}/{real.dtype} and {fake.device}/{fake.dtype}"
        )
    block = config().block
    r, f = _Side(real, reduction, block), _Side(fake, reduction, block)
    _launch(kind, reduction, r, "d_real", f, "d_fake", float(real_label))
    return r.out, f.out, r.grad, f.grad


def g_loss_fwd(fake: torch.Tensor, kind: str, reduction: str):
    """(generator loss, d loss / d fake), in one launch."""
    _check_logits("fake", fake)
    _check_args(kind, reduction)
    f = _Side(fake, reduction, config().block)
    _launch(kind, reduction, f, "g", None, "none", 1.0)
    return f.out, f.grad
