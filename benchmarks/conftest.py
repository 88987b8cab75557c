"""pytest-benchmark suites: kernel level (test_layers.py, test_loss_bn.py) and step
level (test_step.py), the providers eager / compile / fastgan side by side in one run.

Full mode (a CUDA device): DCGAN-64 shapes, batch 64 and 256, bf16 and float32.
Quick mode (no CUDA device, or FASTGAN_BENCH_QUICK=1): tiny shapes, float32 (and
bf16 for the step), one or two timed rounds: what CI runs so the suites never rot.
Every case first checks its provider against a float64 reference (or against eager
on the same weights, for the step) before it is timed.
"""

import os

# As tests/conftest.py: the interpreter decision happens when triton is imported, and
# one thread per library on the shared two-core machines.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("FASTGAN_POISON_OUTPUTS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import fastgan  # noqa: E402
from fastgan.bench import measure  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
QUICK = os.environ.get("FASTGAN_BENCH_QUICK", "0") == "1" or DEVICE == "cpu"
# Timed rounds per case (pytest-benchmark's pedantic mode); warm-up rounds are excluded.
# In quick mode the correctness check each case runs first is its warm-up.
ROUNDS, WARMUP = (2, 0) if QUICK else (20, 5)


def run_benchmark(benchmark, fn, **info):
    """Time fn with pytest-benchmark (the device synchronized after each call, so the
    host clock sees the work) and, on a GPU, also with CUDA events (median)."""
    def synced():
        fn()
        measure.synchronize(DEVICE)

    benchmark.extra_info.update(info, device=DEVICE, quick=QUICK)
    if measure.is_cuda(DEVICE):
        benchmark.extra_info["cuda_events_median_ms"] = measure.time_ms(fn, DEVICE, warmup=WARMUP, reps=ROUNDS).median_ms
    benchmark.pedantic(synced, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)


def rel_error(out, ref) -> float:
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """--benchmark-json files carry what benchmarks/results/ records need."""
    output_json["fastgan"] = {**measure.environment(DEVICE), "quick": QUICK}


@pytest.fixture(autouse=True)
def _restore_backend():
    before = fastgan.get_backend()
    yield
    fastgan.set_backend(before)
