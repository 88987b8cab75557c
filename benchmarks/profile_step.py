"""torch.profiler summary of one provider's DCGAN training step on a CUDA device: the
top kernels by device time and the number of kernel launches per step.

    python benchmarks/profile_step.py [--provider fastgan] [--dtype bfloat16] [--batch 256] --out PATH.json

Warm-up steps run first (compiles, autotuning); then `--steps` steps are profiled and
the counts divided by that number. Needs a GPU (unverified until the owed device run).
"""

from __future__ import annotations

import argparse
import itertools
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from fastgan.bench import dcgan, measure


def summarize(prof, steps: int, top: int) -> dict:
    kernels = [e for e in prof.key_averages() if e.device_type.name == "CUDA" and e.self_device_time_total > 0]
    kernels.sort(key=lambda e: e.self_device_time_total, reverse=True)
    total_us = sum(e.self_device_time_total for e in kernels)
    return {
        "launches_per_step": sum(e.count for e in kernels) / steps,
        "device_ms_per_step": total_us / steps / 1e3,
        "top_kernels": [
            {"name": e.key, "ms_per_step": e.self_device_time_total / steps / 1e3, "calls_per_step": e.count / steps,
             "fraction": e.self_device_time_total / total_us} for e in kernels[:top]
        ],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--provider", choices=dcgan.PROVIDERS, default="fastgan")
    p.add_argument("--dtype", choices=sorted(dcgan.DTYPES), default="bfloat16")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--cond", choices=dcgan.CONDS, default="none")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        p.error("needs a CUDA device")
    cfg = dcgan.StepConfig(batch=args.batch, dtype=args.dtype, cond=args.cond, device="cuda")
    step = dcgan.GANStep(args.provider, *dcgan.make_models(cfg), cfg)
    batches = itertools.cycle(dcgan.make_inputs(cfg))
    for _ in range(args.warmup):
        step(*next(batches))
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(args.steps):
            step(*next(batches))
        torch.cuda.synchronize()
    result = {"benchmark": "profile_step", **measure.environment("cuda"), "provider": args.provider,
              "config": vars(args), **summarize(prof, args.steps, args.top)}
    measure.write_json(args.out, result)
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=args.top))
    print(f"{result['launches_per_step']:.0f} kernel launches per step, {result['device_ms_per_step']:.3f} ms device time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
