"""`fastgan bench`: one DCGAN training step timed for each provider (fastgan.bench.dcgan)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .arguments import EXIT_FAILED, UsageError, device_spec, image_size, positive_int, set_threads


def _providers(text):
    from ..bench.dcgan import PROVIDERS

    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROVIDERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"must be a comma-separated subset of {','.join(PROVIDERS)}, got {text!r}")
    return list(dict.fromkeys(names))


def add_bench(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="time a DCGAN training step: eager PyTorch, torch.compile and fastgan side by side",
        description="Time one DCGAN training step (D on real and fake, G through D, both Adam updates) for each "
        "provider on this device and print images/s, ms/step, ratios to eager and compile, model FLOP utilisation "
        "(against the dense matmul rate measured in the same run: bf16 on a GPU, float32 on a CPU) and peak memory "
        "(GPU only). Unset sizes default to DCGAN-64 at batch 256 in bf16 on a GPU, and to a small model on a CPU.",
    )
    p.set_defaults(handler=run_bench)
    p.add_argument("--device", type=device_spec, default="auto", help="auto (CUDA when available, default), cpu, cuda or cuda:N")
    p.add_argument("--batch", type=positive_int, help="images per step (default: 256 on a GPU, 8 on a CPU)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "bf16", "fp32"),
                   help="float32, or bfloat16 (autocast, parameters in float32); default bfloat16 on a GPU, float32 on a CPU")
    p.add_argument("--image-size", type=image_size, help="image side, a power of two 8..256 (default 64 on a GPU, 32 on a CPU)")
    p.add_argument("--width", type=positive_int, help="channels of the widest-resolution layer (default 64 on a GPU, 16 on a CPU)")
    p.add_argument("--latent", type=positive_int, default=100, help="noise dimension (default 100)")
    p.add_argument("--cond", choices=("none", "class"), default="none",
                   help="none (default) or class: a 10-class conditional model (embedding concatenated to z in G, "
                   "projection in D)")
    p.add_argument("--providers", type=_providers, default=None, help="comma-separated: eager,compile,fastgan (default: all)")
    p.add_argument("--steps", type=positive_int, help="timed steps per provider (default: 20 on a GPU, 5 on a CPU)")
    p.add_argument("--warmup", type=positive_int, help="untimed warm-up steps per provider, >= 1 (compiles happen "
                   "there; default: 5 on a GPU, 2 on a CPU)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for PyTorch (default 1 on a CPU)")
    p.add_argument("--json", metavar="PATH", help="also write the result (table, environment, samples) as JSON")
    p.add_argument("--host", action="store_true",
                   help="instead: the host overhead of the DCGAN-64 step on this CPU, eager against fastgan with every "
                   "Triton launch stubbed out (width 1, batch 2, float32; launch configs as on an H100), and the "
                   "Triton launches of a real-size step (batch 256, bf16). Uses --steps (repeats, default 20) and "
                   "--json; times one thread's CPU time; sets TRITON_INTERPRET=1")


def _run_host_bench(args) -> int:
    import os

    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET", "0") != "1":
        raise UsageError("fastgan bench: error: argument --host: needs TRITON_INTERPRET=1 set before triton is "
                         "imported: run `TRITON_INTERPRET=1 fastgan bench --host`")
    os.environ["TRITON_INTERPRET"] = "1"  # backend 'triton' on CPU tensors (nothing is computed)
    from ..bench import host, measure

    print("fastgan bench: timing the host work of a DCGAN-64 step, eager and fastgan interleaved", file=sys.stderr,
          flush=True)
    record = host.run(repeats=args.steps or 20)
    print(host.format_report(record))
    if args.json is not None:
        measure.write_json(args.json, record)
        print(f"fastgan bench: wrote {args.json}", file=sys.stderr)
    return 0


def run_bench(args) -> int:
    if args.json is not None:
        path = Path(args.json)
        if path.suffix != ".json" or path.is_dir():
            raise UsageError(f"fastgan bench: error: argument --json: must be a .json file path, got {args.json!r}")
    if args.host:
        return _run_host_bench(args)

    import torch

    from ..bench import dcgan, measure

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        raise UsageError(f"fastgan bench: error: argument --device: {device!r} but CUDA is not available")
    set_threads({"threads": args.threads, "device": device})
    dtype = {"bf16": "bfloat16", "fp32": "float32"}.get(args.dtype, args.dtype) or ("bfloat16" if gpu else "float32")
    size = args.image_size or (64 if gpu else 32)
    cfg = dcgan.StepConfig(
        batch=args.batch or (256 if gpu else 8), size=size, width=args.width or (64 if gpu else 16),
        latent=args.latent, dtype=dtype, cond=args.cond, device=device,
    )
    providers = args.providers or list(dcgan.PROVIDERS)
    log = lambda text: print(f"fastgan bench: {text}", file=sys.stderr, flush=True)  # noqa: E731
    log(f"{cfg.describe()} on {measure.device_name(device)}; providers {', '.join(providers)}")
    # With --json the file is rewritten after every provider: a run stopped at a time
    # limit (benchmarks/run_device.sh) keeps the rows it measured.
    partial = None if args.json is None else (lambda so_far: measure.write_json(args.json, so_far.as_dict()))
    result = dcgan.run(cfg, providers, warmup=args.warmup or (5 if gpu else 2), steps=args.steps or (20 if gpu else 5),
                       log=log, on_record=partial).as_dict()
    print(dcgan.format_table(result))
    # Skipped providers (CUDA-only ones on a CPU) are not failures; failed ones are.
    bad = [r["provider"] for r in result["records"] if r.get("error") or r["losses_finite"] is False]
    if args.json is not None:
        measure.write_json(args.json, result)
        log(f"wrote {args.json}")
    if bad:
        print(f"fastgan bench: error: failed or non-finite losses from {', '.join(bad)}", file=sys.stderr)
        return EXIT_FAILED
    return 0
