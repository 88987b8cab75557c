"""Fused adversarial loss and fused batch norm + activation against eager PyTorch,
forward + backward, 256 to 16M elements, with the device's copy bandwidth measured in
the same run. One command on a CUDA machine:

    python benchmarks/bench_loss_bn.py

writes benchmarks/results/loss_bn-<device>-<date>.json ($OUT/... when OUT is set, or
--out DIR). Each record: case, dtype, elements, eager_ms, fastgan_ms, speedup
(eager / fastgan), and for the loss the effective bandwidth (logits read + gradients
written, the least any implementation moves) as GB/s and as a fraction of the copy
bandwidth. The summary checks the issue's targets: loss >= 3x eager up to 1M logits and
>= 80% of copy bandwidth at 16M; batch norm + act >= 1.5x eager.

Eager baselines are what a PyTorch user writes: F.binary_cross_entropy_with_logits
(nonsaturating, minimax), F.mse_loss (lsgan), relu compositions (hinge), means
(wasserstein); F.batch_norm + F.leaky_relu / F.relu. Targets are made once, outside the
timed region. Timings: triton.testing.do_bench (median, synchronized); on the CPU (the
test suite runs this file through the interpreter) a plain wall clock.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import pathlib
import sys

import torch
import torch.nn.functional as F

import fastgan
from fastgan import functional as FG
from fastgan.bench import measure  # timing and records shared with `fastgan bench`

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZES = [4**k for k in range(4, 13)]  # 256 ... 16,777,216
KINDS = ("nonsaturating", "minimax", "lsgan", "hinge", "wasserstein")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
BN_CHANNELS = 64
REAL_LABEL = 0.9  # label smoothing where the kind allows it


def real_label(kind: str) -> float:
    return 1.0 if kind in ("hinge", "wasserstein") else REAL_LABEL


def eager_d_loss(kind: str, n: int, dtype, device):
    """The eager discriminator loss of `kind` on (real, fake); targets made up front."""
    y = real_label(kind)
    ones = torch.full((n,), y, dtype=dtype, device=device)
    zeros = torch.zeros(n, dtype=dtype, device=device)
    if kind in ("nonsaturating", "minimax"):
        return lambda r, f: F.binary_cross_entropy_with_logits(r, ones) + F.binary_cross_entropy_with_logits(f, zeros)
    if kind == "lsgan":
        return lambda r, f: 0.5 * F.mse_loss(r, ones) + 0.5 * F.mse_loss(f, zeros)
    if kind == "hinge":
        return lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean()
    return lambda r, f: f.mean() - r.mean()


def fused_d_loss(kind: str):
    y = real_label(kind)
    return lambda r, f: FG.discriminator_loss(r, f, kind, real_label=y)


def bn_shape(elements: int) -> tuple[int, int, int, int]:
    """[N, 64, S, S] with about `elements` elements (exactly, for powers of 4 from 256):
    S up to 32, the feature maps of DCGAN-64, while N stays >= 4; then N grows."""
    per_channel = elements // BN_CHANNELS
    side = 1
    while side < 32 and per_channel // ((side * 2) ** 2) >= 4:
        side *= 2
    return (per_channel // (side * side), BN_CHANNELS, side, side)


def forward_backward(loss_fn, inputs):
    def run():
        out = loss_fn(*inputs)
        if out.dim() > 0:
            out = out.float().square().mean()
        torch.autograd.grad(out, inputs)

    return run


def make_timer(device: str):
    if device.startswith("cuda"):
        import triton.testing

        return lambda fn: triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    # The CPU dry run: one warm-up call (compiles), one timed call.
    return lambda fn: measure.time_ms(fn, device, warmup=1, reps=1).median_ms


def copy_bandwidth_gbps(timer, device: str, elements: int) -> float:
    """Device-to-device copy: bytes read + written per second."""
    src = torch.randn(elements, device=device)
    dst = torch.empty_like(src)
    ms = timer(lambda: dst.copy_(src))
    return 2 * src.numel() * src.element_size() / (ms * 1e-3) / 1e9


def loss_records(timer, device, sizes, dtypes, kinds, copy_gbps, compile_eager):
    records = []
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        for kind in kinds:
            for n in sizes:
                r = torch.randn(n, device=device).to(dtype).requires_grad_()
                f = torch.randn(n, device=device).to(dtype).requires_grad_()
                eager = eager_d_loss(kind, n, dtype, device)
                ms = {
                    "eager": timer(forward_backward(eager, (r, f))),
                    "fastgan": timer(forward_backward(fused_d_loss(kind), (r, f))),
                }
                if compile_eager:
                    ms["compile"] = timer(forward_backward(torch.compile(eager), (r, f)))
                moved = 2 * 2 * n * r.element_size()  # read both logits, write both gradients
                gbps = moved / (ms["fastgan"] * 1e-3) / 1e9
                records.append(dict(
                    op="discriminator_loss", case=kind, dtype=dtype_name, elements=2 * n,
                    **{f"{k}_ms": v for k, v in ms.items()},
                    speedup=ms["eager"] / ms["fastgan"], fastgan_GBps=gbps, fraction_of_copy=gbps / copy_gbps,
                ))
    return records


def bn_records(timer, device, sizes, dtypes, compile_eager):
    records = []
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        for act, eager_act in (("lrelu", lambda t: F.leaky_relu(t, 0.2)), ("relu", F.relu)):
            for elements in sizes:
                shape = bn_shape(elements)
                x = torch.randn(shape, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
                x.requires_grad_()
                # Parameters in float32, as autocast and mixed-precision training keep them.
                w = torch.rand(shape[1], device=device).add_(0.5).requires_grad_()
                b = torch.randn(shape[1], device=device).requires_grad_()
                rm, rv = torch.zeros(shape[1], device=device), torch.ones(shape[1], device=device)

                def eager(x, w, b, _act=eager_act):
                    return _act(F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5))

                def fused(x, w, b, _act=act):
                    return FG.batch_norm_act(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5, act=_act)

                ms = {
                    "eager": timer(forward_backward(eager, (x, w, b))),
                    "fastgan": timer(forward_backward(fused, (x, w, b))),
                }
                if compile_eager:
                    ms["compile"] = timer(forward_backward(torch.compile(eager), (x, w, b)))
                records.append(dict(
                    op="batch_norm_act", case=f"{act} {list(shape)} channels_last", dtype=dtype_name,
                    elements=x.numel(), **{f"{k}_ms": v for k, v in ms.items()}, speedup=ms["eager"] / ms["fastgan"],
                ))
    return records


def summary(records) -> dict:
    """The issue's targets, checked on what was measured."""
    loss = [r for r in records if r["op"] == "discriminator_loss"]
    bn = [r for r in records if r["op"] == "batch_norm_act"]
    out = {}
    small = [r["speedup"] for r in loss if r["elements"] <= 2 * 2**20]
    if small:
        out["loss_min_speedup_up_to_1M"] = min(small)
        out["loss_speedup_target_3x_met"] = min(small) >= 3.0
    largest = max((r["elements"] for r in loss), default=None)
    if largest is not None and largest >= 2 * 2**24:
        fractions = [r["fraction_of_copy"] for r in loss if r["elements"] == largest]
        out["loss_min_fraction_of_copy_at_16M"] = min(fractions)
        out["loss_bandwidth_target_80pct_met"] = min(fractions) >= 0.8
    if bn:
        speedups = [r["speedup"] for r in bn]
        out["bn_min_speedup"] = min(speedups)
        out["bn_geomean_speedup"] = math.exp(sum(math.log(s) for s in speedups) / len(speedups))
        out["bn_speedup_target_1.5x_met"] = min(speedups) >= 1.5
    return out


def output_path(out_dir: str | None, device: str, date: _dt.datetime) -> pathlib.Path:
    return measure.result_path("loss_bn", measure.device_name(device), date, out_dir)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="elements per loss side / per batch norm input")
    p.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"], choices=sorted(DTYPES))
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--copy-elements", type=int, default=2**26, help="float32 elements of the copy-bandwidth probe")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the eager baselines")
    p.add_argument("--skip-bn", action="store_true")
    p.add_argument("--skip-loss", action="store_true")
    p.add_argument("--out", default=None, help="folder for the JSON (default $OUT, else benchmarks/results)")
    return p.parse_args(argv)


def main(argv=None) -> pathlib.Path:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark times GPU kernels (pass --device cpu for a dry run)")
    fastgan.set_backend("triton")  # the kernels, on CPU tensors too (interpreter)
    timer = make_timer(args.device)
    started = _dt.datetime.now(_dt.timezone.utc)
    copy_gbps = copy_bandwidth_gbps(timer, args.device, args.copy_elements)
    records = []
    if not args.skip_loss:
        records += loss_records(timer, args.device, args.sizes, args.dtypes, args.kinds, copy_gbps, args.compile)
    if not args.skip_bn:
        records += bn_records(timer, args.device, args.sizes, args.dtypes, args.compile)
    result = dict(
        benchmark="loss_bn", **measure.environment(args.device, started), copy_GBps=copy_gbps, records=records, summary=summary(records),
    )
    path = output_path(args.out, args.device, started)
    measure.write_json(path, result)
    for r in records:
        print(f"{r['op']:20s} {r['case']:40s} {r['dtype']:9s} {r['elements']:>10d}  "
              f"eager {r['eager_ms']:8.4f} ms  fastgan {r['fastgan_ms']:8.4f} ms  x{r['speedup']:.2f}")
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
