"""Host time per Triton launch with the direct launch path off and on (kernels/_launch.py).

For one small launch of each kernel family a training step launches (conv gather,
conv weight gradient, batch-norm normalize with the running-statistics update, the
adversarial loss), through the kernel launchers fastgan calls (plan lookup, output
allocation, launch):
- host microseconds per launch with the direct path off (every launch through
  Triton's `kernel[grid](...)`: JITFunction.run) and on: the wall clock of N
  back-to-back launches of a tiny problem, then one synchronize, divided by N; the
  median of several repeats, off and on interleaved. It is host time: each tiny
  kernel runs for a few microseconds on the GPU, less than it takes to launch it, so
  the GPU waits on the host and the wall clock measures the host;
- that the outputs of the two paths are equal bit for bit (exit status 1 if not);
- that the direct path served the launches (Triton's JITFunction.run not called once
  the plan's kernel is kept; exit status 3 if it was).

    python benchmarks/launch_overhead.py [--json PATH] [--launches N] [--repeats R]

Needs a CUDA device (about 20-40 s with the compiles on an H200); on a CPU it says so
and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

import torch


def _families(device):
    """{name: (function making one launch and returning its outputs, reset before a
    comparison run)} on tiny bf16 problems."""
    from fastgan.kernels import batch_norm as KB
    from fastgan.kernels import conv as KC
    from fastgan.kernels import loss as KS

    g = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape, dtype=torch.bfloat16):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    x = rand(2, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    w = rand(32, 16, 3, 3)
    b = rand(32)
    geometry = dict(stride=(1, 1), padding=(1, 1))

    def gather():
        return KC.conv_fwd(x, w, b, geometry["stride"], geometry["padding"], (0, 0), False, "relu", 0.2, 1.0, None)

    y = gather()[0]
    grad = rand(*y.shape).contiguous(memory_format=torch.channels_last)

    def wgrad():
        return KC.conv_grad_weight(grad, y, x, (3, 3), geometry["stride"], geometry["padding"], False, "relu",
                                   0.2, 1.0, None, True)

    c = 32
    bx = rand(4, c, 8, 8).contiguous(memory_format=torch.channels_last)
    mean = bx.float().mean(dim=(0, 2, 3))
    var = bx.float().var(dim=(0, 2, 3), unbiased=False)
    shift = mean - bx[0, :, 0, 0].float()
    weight, bias = rand(c), rand(c)
    running = [torch.zeros(c, device=device), torch.ones(c, device=device)]

    def normalize():
        y, _ = KB.bn_normalize(bx, weight, bias, (mean, var, shift), 1e-5, "lrelu", 0.2,
                               running=(running[0], running[1], 0.1, 256 / 255))
        return y, running[0], running[1]

    def reset_running():
        running[0].zero_(), running[1].fill_(1.0)

    real, fake = rand(256), rand(256)

    def loss():
        return KS.d_loss_fwd(real, fake, "nonsaturating", 0.9, "mean")

    return {"conv_gather": (gather, None), "conv_wgrad": (wgrad, None), "bn_normalize": (normalize, reset_running),
            "loss": (loss, None)}


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().reshape(-1).view(torch.uint8)  # 0-d (a mean loss) too


def _equal(a, b) -> bool:
    return len(a) == len(b) and all(
        u.shape == v.shape and u.dtype == v.dtype and torch.equal(_bits(u), _bits(v)) for u, v in zip(a, b))


@contextlib.contextmanager
def _counting_jit_runs():
    """Counts JITFunction.run calls (Triton's launch path) in the block."""
    from triton.runtime.jit import JITFunction

    count = [0]
    original = JITFunction.run

    def run(self, *args, **kwargs):
        count[0] += 1
        return original(self, *args, **kwargs)

    JITFunction.run = run
    try:
        yield count
    finally:
        JITFunction.run = original


def measure(launches: int = 200, repeats: int = 7) -> dict:
    from fastgan.kernels import _launch

    device = torch.device("cuda")
    families = _families(device)
    result = {}
    for name, (fn, reset) in families.items():
        outputs = {}
        for on in (False, True):
            with _launch.direct_launches(on):
                for _ in range(3):  # compile, keep the kernel, launch directly
                    fn()
                if reset:
                    reset()
                outputs[on] = [t.clone() for t in fn() if isinstance(t, torch.Tensor)]
                torch.cuda.synchronize()
        with _launch.direct_launches(True), _counting_jit_runs() as count:
            for _ in range(5):
                fn()
            torch.cuda.synchronize()
        samples = {False: [], True: []}
        for _ in range(repeats):
            for on in (False, True):
                with _launch.direct_launches(on):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    for _ in range(launches):
                        fn()
                    torch.cuda.synchronize()
                    samples[on].append((time.perf_counter() - t0) / launches * 1e6)
        off, on = statistics.median(samples[False]), statistics.median(samples[True])
        result[name] = {
            "us_per_launch_off": round(off, 2), "us_per_launch_on": round(on, 2), "saved_us": round(off - on, 2),
            "ratio_on_off": round(on / off, 3), "samples_off": [round(s, 2) for s in samples[False]],
            "samples_on": [round(s, 2) for s in samples[True]], "bit_equal": _equal(outputs[False], outputs[True]),
            "jit_runs_when_on": count[0],
        }
        print(f"{name:13s} off {off:7.2f} us  on {on:7.2f} us  saved {off - on:6.2f} us  "
              f"bit-equal {result[name]['bit_equal']}  JITFunction.run calls when on: {count[0]}", flush=True)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    p.add_argument("--launches", type=int, default=200, help="launches per timed repeat (default 200)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats, off and on interleaved (default 7)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("launch_overhead.py needs CUDA: no CUDA device here, nothing measured")
        return 0
    import triton

    from fastgan.bench import measure as M

    start = time.perf_counter()
    families = measure(args.launches, args.repeats)
    data = {"benchmark": "launch_overhead", **M.environment(torch.device("cuda")), "triton": triton.__version__,
            "launches": args.launches, "repeats": args.repeats, "families": families,
            "seconds": round(time.perf_counter() - start, 1)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    if not all(f["bit_equal"] for f in families.values()):
        print("MISMATCH: the direct path's outputs differ from Triton's launch path", file=sys.stderr)
        return 1
    if any(f["jit_runs_when_on"] for f in families.values()):
        print("the direct path did not serve every launch (JITFunction.run was called)", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
