"""Helpers shared by the tests: error measure, tolerances, random inputs."""

from __future__ import annotations

import math

import torch

# The tolerance of each dtype: ||out - ref|| / ||ref|| against a float64 reference.
TOLERANCE = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    torch.float16: 5e-3,
    torch.bfloat16: 2e-2,
}


def rel_err(out: torch.Tensor, ref: torch.Tensor, magnitude: torch.Tensor | None = None) -> float:
    """||out - ref|| / ||ref||; inf if out holds a NaN or inf.

    `magnitude`, where given, is the same computation on absolute values (|x|, |w|,
    |upstream|): the size of the terms that were summed. A sum that cancels to almost
    nothing (a 1-element bias gradient, say) has a tiny ||ref|| that says nothing about
    the rounding of its terms; dividing by max(||ref||, ||magnitude||) is the standard
    forward-error measure, equal to the plain one when nothing cancels, and any wrong
    or missing term still shows as an error of order 1/(number of terms).
    """
    assert out.shape == ref.shape, f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    out64, ref64 = out.detach().to(torch.float64).cpu(), ref.detach().to(torch.float64).cpu()
    if not torch.isfinite(out64).all():
        return math.inf
    num, den = (out64 - ref64).norm().item(), ref64.norm().item()
    if magnitude is not None:
        den = max(den, magnitude.detach().to(torch.float64).cpu().norm().item())
    return num / den if den > 0 else num


def assert_close(out, ref, dtype, what, factor=1.0, magnitude=None):
    """rel_err(out, ref) <= the TOLERANCE of dtype (times factor). Values below dtype's
    smallest normal number hold no relative precision (sigmoid(-100) is 4e-44, a
    float32 denormal; PyTorch's CPU sigmoid(-90.7) gives 0 for the 4.2e-40 it is): they
    are compared as 0 (flushed, as fast GPU math does), and the denominator never drops
    below that number."""
    tol = TOLERANCE[dtype] * factor
    tiny = torch.finfo(dtype).tiny
    floor = torch.full((), tiny, dtype=torch.float64)
    magnitude = floor if magnitude is None else torch.maximum(magnitude.detach().double().norm().cpu(), floor)
    err = rel_err(_flushed(out, tiny), _flushed(ref, tiny), magnitude)
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:.3g}"


def _flushed(t: torch.Tensor, tiny: float) -> torch.Tensor:
    """t in float64 on the CPU with its values below `tiny` in magnitude set to 0 (NaN
    and inf kept)."""
    t = t.detach().to(torch.float64).cpu()
    return torch.where(t.abs() < tiny, torch.zeros((), dtype=torch.float64), t)


def derivative_bound(act: str, alpha, gain) -> float:
    """An upper bound of |d act(z) * gain / dz| over all z: the largest derivative of
    PyTorch's own module for act on a fine grid of [-20, 20], plus 2% (the grid can
    miss the peak by a little)."""
    from fastgan.reference.activations import lookup

    z = torch.linspace(-20, 20, 40001, dtype=torch.float64, requires_grad=True)
    (d,) = torch.autograd.grad(lookup(act).torch_module(0.2 if alpha is None else alpha)(z).sum(), z)
    return d.abs().max().item() * 1.02 * (1.0 if gain is None else gain)


def magnitudes(linear_part, inputs, upstream, bound):
    """Forward and input-gradient magnitudes of a bias + activation op whose linear
    part is `linear_part`: the same computation on |inputs| and |upstream| * bound."""
    abs_inputs = [None if t is None else leaf(t.detach().double().abs()) for t in inputs]
    z = linear_part(*abs_inputs)
    mags = grads(z, abs_inputs, upstream.detach().double().abs() * bound)
    return z * bound, mags


class Rand:
    """Random tensors from one seed (drawn by hypothesis, so a failure reproduces)."""

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, *shape, dtype=torch.float32, scale=1.0, offset=0.0, channels_last=False):
        return randn(*shape, dtype=dtype, scale=scale, offset=offset, channels_last=channels_last, generator=self.gen)


def randn(*shape, dtype=torch.float32, scale=1.0, offset=0.0, channels_last=False, generator=None):
    t = torch.randn(*shape, dtype=torch.float64, generator=generator) * scale + offset
    t = t.to(dtype)
    if channels_last and t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def grads(out, inputs, upstream):
    got = torch.autograd.grad(out, [t for t in inputs if t is not None], upstream, allow_unused=True)
    return list(got)


def clamp_ambiguous(z64: torch.Tensor, act: dict, dtype: torch.dtype) -> torch.Tensor:
    """Elements whose clamp decision is undetermined at `dtype`'s precision.

    The clamp mask is discontinuous: a float64 output of 0.7999 is unclamped, but stored
    in float16 it rounds to fp16(0.8) and reads as clamped. Within two units of
    `dtype`'s rounding of the bound either answer is right, so tests give those elements
    no upstream gradient (on both sides of a comparison) instead of a looser tolerance.
    """
    if act.get("clamp") is None:
        return torch.zeros_like(z64, dtype=torch.bool)
    from fastgan.reference.activations import bias_act

    alpha = 0.2 if act.get("alpha") is None else act["alpha"]
    gain = 1.0 if act.get("gain") is None else act["gain"]
    unclamped = bias_act(z64, act["act"], alpha, gain, None).abs()
    band = 2 * torch.finfo(dtype).eps * act["clamp"]
    return (unclamped - act["clamp"]).abs() <= band
