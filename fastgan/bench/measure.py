"""Timing, measured ceilings, peak memory and run records.

GPU timings use CUDA events around each call after warm-up calls (the device is
synchronized before the events are read); CPU timings use time.perf_counter. Both
report the median, and keep every sample so spread can be judged. Inputs for the
ceilings are random, never zeros (zeros can run faster than real data).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import time
from typing import Callable

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]


def is_cuda(device) -> bool:
    return torch.device(device).type == "cuda"


def synchronize(device) -> None:
    if is_cuda(device):
        torch.cuda.synchronize(torch.device(device))


@dataclasses.dataclass
class Timing:
    """Per-call times of one measured function, in milliseconds."""

    samples_ms: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def spread(self) -> float:
        """(max - min) / median: how far apart the repeats were."""
        return (max(self.samples_ms) - min(self.samples_ms)) / self.median_ms if self.median_ms > 0 else 0.0


def time_ms(fn: Callable[[], object], device, *, warmup: int = 3, reps: int = 10) -> Timing:
    """Call fn `warmup` times untimed, then `reps` times timed, one sample per call."""
    if warmup < 0 or reps < 1:
        raise ValueError(f"warmup must be >= 0 and reps >= 1, got warmup={warmup}, reps={reps}")
    for _ in range(warmup):
        fn()
    if is_cuda(device):
        synchronize(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        synchronize(device)
        return Timing([start.elapsed_time(end) for start, end in events])
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return Timing(samples)


# ------------------------------------------------------------------ ceilings
def default_matmul_dtype(device) -> torch.dtype:
    """The dense rate model FLOP utilisation is quoted against: bf16 on a GPU (its
    tensor-core rate), float32 on a CPU (bf16 matmul there is not a hardware ceiling)."""
    return torch.bfloat16 if is_cuda(device) else torch.float32


def matmul_tflops(device, *, n: int | None = None, dtype: torch.dtype | None = None,
                  warmup: int = 3, reps: int = 10) -> dict:
    """The dense matrix-product rate measured now: an n x n x n torch.matmul."""
    dtype = dtype or default_matmul_dtype(device)
    n = n or (8192 if is_cuda(device) else 512)
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=gen).to(dtype)
    b = torch.randn(n, n, device=device, generator=gen).to(dtype)
    ms = time_ms(lambda: torch.matmul(a, b), device, warmup=warmup, reps=reps).median_ms
    return {"tflops": 2 * n**3 / (ms * 1e-3) / 1e12, "dtype": str(dtype).replace("torch.", ""), "n": n}


def copy_gbytes_per_s(device, *, elements: int | None = None, warmup: int = 3, reps: int = 10) -> float:
    """Device-to-device copy bandwidth: bytes read + bytes written per second."""
    elements = elements or ((1 << 28) if is_cuda(device) else (1 << 22))
    src = torch.randn(elements, device=device)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device, warmup=warmup, reps=reps).median_ms
    return 2 * src.numel() * src.element_size() / (ms * 1e-3) / 1e9


# ------------------------------------------------------------------ memory
def reset_peak_memory(device) -> None:
    if is_cuda(device):
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def peak_memory_bytes(device) -> int | None:
    """Peak allocated device memory since the last reset_peak_memory; None on a CPU,
    where PyTorch keeps no such count (never a made-up number)."""
    if is_cuda(device):
        return int(torch.cuda.max_memory_allocated(torch.device(device)))
    return None


# ------------------------------------------------------------------ run records
def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = f"cpu ({platform.processor() or platform.machine()}"
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        name += ", Triton interpreter"
    return name + ")"


def git_commit() -> str:
    """HEAD of the checkout, with '+dirty' when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"torch": torch.__version__, "triton": triton_version, "python": platform.python_version()}


def environment(device, now: _dt.datetime | None = None) -> dict:
    """What every recorded run carries: device, versions, commit, date (UTC)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    env = {"device": device_name(device), **versions(), "commit": git_commit(),
           "date": now.isoformat(timespec="seconds")}
    if is_cuda(device):
        env["capability"] = list(torch.cuda.get_device_capability(torch.device(device)))
    return env


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def result_path(benchmark: str, device: str, now: _dt.datetime, folder=None) -> pathlib.Path:
    """<folder>/<benchmark>_<device slug>_<UTC stamp>.json; folder defaults to $OUT,
    else benchmarks/results/."""
    folder = pathlib.Path(folder or os.environ.get("OUT") or ROOT / "benchmarks" / "results")
    return folder / f"{benchmark}_{slug(device)}_{now.astimezone(_dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"


def write_json(path, data: dict) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path
