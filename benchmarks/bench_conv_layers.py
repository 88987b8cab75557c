"""Per-layer benchmark of the fused conv kernels on the DCGAN-64 layer shapes.

For every conv layer of the DCGAN-64 generator and discriminator (tests/dcgan.py) at
batch 256, bfloat16, channels_last, with the layer's activation and a bias:
median time of the forward and of forward + backward (input, weight and bias
gradients; the first generator layer's input, the latent, needs none) for
    fastgan   fastgan.functional.conv{,_transpose}2d_bias_act (the Triton kernels)
    eager     cuDNN conv (F.conv2d / F.conv_transpose2d with the bias) + the activation
              as separate eager ops, what a PyTorch user writes
timed with triton.testing.do_bench (CUDA events, warm-up excluded, L2 flushed before
each run, random non-zero inputs). The same run measures the device's dense bf16
matrix rate (an 8192^3 torch.matmul) and its copy bandwidth (bytes read + written), and
reports each layer's useful FLOP rate as a fraction of that bf16 rate (useful: taps
that fall on padding or on the zeros a transposed convolution inserts are not counted;
flops_fwd_dense also counts taps on padding, as the published per-image totals do).
Each layer's fastgan output is checked against the eager one before it is timed.

One command on a CUDA machine (from the repository root, after `make install`):
    .venv/bin/python benchmarks/bench_conv_layers.py [--batch 256] [--layers G1,D1] [--out DIR]
The JSON goes to DIR, else $OUT, else benchmarks/results/, named
conv_layers_<device>_<date>.json, with the device name, torch/triton versions, the
commit and the date.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import sys

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from dcgan import layer_shapes  # noqa: E402  (the one list of DCGAN-64 layers)

from fastgan.bench import measure  # noqa: E402  (timing, ceilings and records shared with `fastgan bench`)

# The activation each layer is fused with in these measurements.
LAYER_ACT = {"G4": "tanh", "D0": "lrelu", "D1": "lrelu", "D2": "lrelu", "D3": "lrelu", "D4": "sigmoid"}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def layer_act(name: str) -> str:
    return LAYER_ACT.get(name, "relu")


def _valid_pairs(out_len: int, in_len: int, k: int, s: int, p: int, transposed: bool) -> int:
    """Number of (position, tap) pairs along one axis that multiply real data."""
    if transposed:  # input i, tap r writes output i*s - p + r
        return sum(1 for i in range(in_len) for r in range(k) if 0 <= i * s - p + r < out_len)
    return sum(1 for o in range(out_len) for r in range(k) if 0 <= o * s - p + r < in_len)


def output_hw(transposed, x_shape, w_shape, stride, padding):
    h, w = x_shape[2:]
    kh, kw = w_shape[2:]
    if transposed:
        return (h - 1) * stride - 2 * padding + kh, (w - 1) * stride - 2 * padding + kw
    return (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1


def layer_flops(transposed, x_shape, w_shape, stride, padding) -> int:
    """Useful forward FLOPs (2 per multiply-add) of one layer."""
    oh, ow = output_hw(transposed, x_shape, w_shape, stride, padding)
    n, c_in = x_shape[:2]
    c_out = w_shape[1] if transposed else w_shape[0]
    kh, kw = w_shape[2:]
    pairs_h = _valid_pairs(oh, x_shape[2], kh, stride, padding, transposed)
    pairs_w = _valid_pairs(ow, x_shape[3], kw, stride, padding, transposed)
    return 2 * n * c_in * c_out * pairs_h * pairs_w


def dense_layer_flops(transposed, x_shape, w_shape, stride, padding) -> int:
    """Forward FLOPs counting every tap, padding included (the published figures' convention:
    104.6 M multiply-adds per image for the generator, 103.8 M for the discriminator)."""
    n, c_in = x_shape[:2]
    c_out = w_shape[1] if transposed else w_shape[0]
    if transposed:  # every input pixel meets every tap
        positions = x_shape[2] * x_shape[3]
    else:  # every output pixel meets every tap
        oh, ow = output_hw(transposed, x_shape, w_shape, stride, padding)
        positions = oh * ow
    return 2 * n * positions * c_in * c_out * w_shape[2] * w_shape[3]


def backward_flops(name: str, fwd_flops: int) -> int:
    """Input gradient (skipped for G0, whose input is the latent) + weight gradient."""
    return fwd_flops * (1 if name == "G0" else 2)


def summarize(layer: dict, times: dict, peak_tflops: float) -> dict:
    """A layer's record: times (ms), eager/fastgan speedups, fastgan's useful TFLOP/s
    and its fraction of the measured bf16 matrix rate."""
    out = dict(layer)
    out.update({f"{k}_ms": round(v, 5) for k, v in times.items()})
    for phase, flops in (("fwd", layer["flops_fwd"]), ("fwd_bwd", layer["flops_fwd"] + layer["flops_bwd"])):
        fast, eager = times[f"fastgan_{phase}"], times[f"eager_{phase}"]
        out[f"speedup_{phase}"] = round(eager / fast, 4)
        tflops = flops / (fast * 1e-3) / 1e12
        out[f"fastgan_{phase}_tflops"] = round(tflops, 2)
        out[f"fastgan_{phase}_fraction_of_bf16_peak"] = round(tflops / peak_tflops, 4)
        out[f"eager_{phase}_fraction_of_bf16_peak"] = round(flops / (eager * 1e-3) / 1e12 / peak_tflops, 4)
    return out


def result_path(out_dir: str | None, device_name: str, now: datetime.datetime) -> pathlib.Path:
    return measure.result_path("conv_layers", device_name, now, out_dir)


# ------------------------------------------------------------------ device side


def measure_peaks() -> dict:
    """Dense bf16 matrix rate and device copy bandwidth, measured now on this device."""
    return {
        "bf16_matmul_tflops": round(measure.matmul_tflops("cuda", n=8192, dtype=torch.bfloat16, reps=50)["tflops"], 1),
        "copy_gbytes_per_s": round(measure.copy_gbytes_per_s("cuda", elements=1 << 28, reps=50), 1),
    }


def eager_act(y, act):
    if act == "relu":
        return F.relu(y)
    if act == "lrelu":
        return F.leaky_relu(y, 0.2)
    if act == "tanh":
        return torch.tanh(y)
    if act == "sigmoid":
        return torch.sigmoid(y)
    raise ValueError(act)


def bench_layer(name, transposed, x_shape, w_shape, stride, padding, dtype, do_bench, device="cuda"):
    from fastgan import functional as FG
    from fastgan.kernels import _tiles

    act = layer_act(name)
    gen = torch.Generator(device=device).manual_seed(0)
    c_in = x_shape[1]
    c_out = w_shape[1] if transposed else w_shape[0]
    fan_in = (c_in if not transposed else w_shape[0]) * w_shape[2] * w_shape[3]
    x = torch.randn(*x_shape, device=device, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    w = (torch.randn(*w_shape, device=device, generator=gen) * fan_in**-0.5).to(dtype)
    w = w.contiguous(memory_format=torch.channels_last)  # as model.to(memory_format=channels_last) leaves it
    b = (torch.randn(c_out, device=device, generator=gen) * 0.1).to(dtype)
    x.requires_grad_(name != "G0")
    w.requires_grad_(True)
    b.requires_grad_(True)
    inputs = [t for t in (x, w, b) if t.requires_grad]

    if transposed:
        def fast(x, w, b):
            return FG.conv_transpose2d_bias_act(x, w, b, stride=stride, padding=padding, act=act)

        def eager(x, w, b):
            return eager_act(F.conv_transpose2d(x, w, b, stride, padding), act)
    else:
        def fast(x, w, b):
            return FG.conv2d_bias_act(x, w, b, stride=stride, padding=padding, act=act)

        def eager(x, w, b):
            return eager_act(F.conv2d(x, w, b, stride, padding), act)

    with _tiles.recording() as lookups:
        y_fast = fast(x, w, b)
        g = torch.randn(y_fast.shape, device=device, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
        grads_fast = torch.autograd.grad(y_fast, inputs, g)
    y_eager = eager(x, w, b)
    grads_eager = torch.autograd.grad(y_eager, inputs, g)
    errors = {"forward": _rel(y_fast, y_eager)}
    for label, gf, ge in zip(["input", "weight", "bias"][3 - len(inputs):], grads_fast, grads_eager):
        errors[f"grad_{label}"] = _rel(gf, ge)

    times = {}
    for provider, fn in (("fastgan", fast), ("eager", eager)):
        with torch.no_grad():
            times[f"{provider}_fwd"] = do_bench(lambda: fn(x, w, b), warmup=25, rep=100, return_mode="median")

        def step(fn=fn):
            torch.autograd.grad(fn(x, w, b), inputs, g)

        times[f"{provider}_fwd_bwd"] = do_bench(step, warmup=25, rep=100, return_mode="median")
    flops = layer_flops(transposed, x_shape, w_shape, stride, padding)
    layer = {
        "name": name, "transposed": transposed, "x_shape": list(x_shape), "w_shape": list(w_shape),
        "stride": stride, "padding": padding, "act": act, "bias": True,
        "flops_fwd": flops, "flops_bwd": backward_flops(name, flops),
        "flops_fwd_dense": dense_layer_flops(transposed, x_shape, w_shape, stride, padding),
        "rel_err_vs_eager": {k: round(v, 6) for k, v in errors.items()},
        "tile_lookups": sorted({f"{kind}:{key}" for kind, key in lookups}),
    }
    return layer, times


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--layers", default="", help="comma-separated layer names (default: all)")
    parser.add_argument("--out", default=None, help="output folder (default: $OUT, else benchmarks/results)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        parser.error("TRITON_INTERPRET=1: the benchmark times compiled kernels; unset it")
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device")
    import triton
    from triton.testing import do_bench

    from fastgan.kernels import _tiles

    device = torch.device("cuda")
    wanted = {s for s in args.layers.split(",") if s}
    peaks = measure_peaks()
    print(f"device {torch.cuda.get_device_name()}: bf16 matmul {peaks['bf16_matmul_tflops']} TFLOP/s, "
          f"copy {peaks['copy_gbytes_per_s']} GB/s", flush=True)
    records = []
    for name, transposed, x_shape, w_shape, stride, padding in layer_shapes(args.batch):
        if wanted and name not in wanted:
            continue
        layer, times = bench_layer(name, transposed, x_shape, w_shape, stride, padding, DTYPES[args.dtype], do_bench)
        rec = summarize(layer, times, peaks["bf16_matmul_tflops"])
        records.append(rec)
        print(f"{name}: fwd fastgan {rec['fastgan_fwd_ms']:.4f} ms eager {rec['eager_fwd_ms']:.4f} ms "
              f"(x{rec['speedup_fwd']:.2f}); fwd+bwd fastgan {rec['fastgan_fwd_bwd_ms']:.4f} ms eager "
              f"{rec['eager_fwd_bwd_ms']:.4f} ms (x{rec['speedup_fwd_bwd']:.2f}); "
              f"{rec['fastgan_fwd_fraction_of_bf16_peak']:.1%} of bf16 peak fwd; err {rec['rel_err_vs_eager']}",
              flush=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    result = {
        "benchmark": "conv_layers",
        "device": torch.cuda.get_device_name(),
        "capability": list(torch.cuda.get_device_capability()),
        "config_file": _tiles.table_name_for(device),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "commit": measure.git_commit(),
        "date": now.isoformat(timespec="seconds"),
        "batch": args.batch,
        "dtype": args.dtype,
        "memory_format": "channels_last",
        "float32_tf32": _tiles.tf32_allowed("conv"),  # what the conv kernels (and cuDNN) use
        "peaks": peaks,
        "layers": records,
    }
    path = measure.write_json(result_path(args.out, result["device"], now), result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
