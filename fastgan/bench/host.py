"""Host overhead of a training step: what Python and PyTorch's dispatcher cost per
step, with the arithmetic taken out.

The DCGAN-64 step of fastgan.bench.dcgan (same layer sequence, same GANStep) runs for
eager PyTorch and for fastgan at a negligible size (width 1, batch 2, float32, on the
CPU). fastgan runs on backend 'triton' with its launch configs chosen as on an H100
(kernels._common.emulating) and every Triton launch replaced by a no-op
(bench.launches.recording_launches(execute=False)): what is left is the host work of a
GPU step (validation, dispatch, autograd, planning, allocation) up to the launch.
Both run the same layer sequence (fuse() of the same plain model; the discriminator's
head conv stays plain in both), the same autocast setting and the same Adam: the fused
one (one update call for all parameters), which is what GANStep builds on a GPU; the
single-tensor Adam that a CPU GANStep gets by default would add a per-parameter loop
of small ops to both sides that the GPU step does not run.

What each figure leaves out or adds, so the ratio is an estimate, not a bound either
way: fastgan's omits the launches themselves (each is a call, with the launcher's
arguments, of a function that does nothing; the last warm-up step records them for
the count; on a GPU Triton's launcher binds the arguments and calls the driver, per
launch); eager's
includes its CPU kernels at this size (oneDNN convolutions, batch norm: a few
microseconds of arithmetic and primitive setup each), where a GPU step would pay a
cuDNN / cuBLAS dispatch and a launch instead. The Adam updates (single-tensor on a
CPU) and the autograd engine are costs both pay. Steps of the two alternate and
medians are reported.
Time is the CPU time of the calling thread (time.thread_time) with PyTorch on one
thread: host work is what this thread does, and on a shared machine the wall clock
also counts the time other processes hold the core, which can double a step.

`launch_count` counts the Triton launches of one real-size step (DCGAN-64, batch 256,
bf16 autocast, tiles as on sm_90) the same way: nothing is computed, so it runs on a
CPU in a few seconds.

Backend 'triton' on CPU tensors needs TRITON_INTERPRET=1 set before triton is
imported (CI sets it; `fastgan bench --host` sets it when it starts).
"""

from __future__ import annotations

import collections
import contextlib
import statistics
import time
from dataclasses import dataclass, field

import torch

from .._backend import interpreter_enabled, use_backend
from . import dcgan, measure
from .launches import recording_launches

# The GPU whose launch decisions the stubbed step reproduces: (Triton target, SMs).
EMULATED_GPU = ("cuda_90", 132)


def host_config(batch: int = 2, width: int = 1) -> dcgan.StepConfig:
    """The DCGAN-64 layer sequence at a size where arithmetic is negligible."""
    return dcgan.StepConfig(batch=batch, size=64, width=width, latent=100, dtype="float32", device="cpu")


def launch_config() -> dcgan.StepConfig:
    """The real-size step whose launches are counted: DCGAN-64, batch 256, bf16."""
    return dcgan.StepConfig(batch=256, size=64, width=64, latent=100, dtype="bfloat16", device="cpu")


def _require_interpreter() -> None:
    if not interpreter_enabled():
        raise RuntimeError(
            "the host benchmark runs fastgan's backend 'triton' on CPU tensors: set TRITON_INTERPRET=1 before "
            "triton is imported (`fastgan bench --host` does)"
        )


@contextlib.contextmanager
def stubbed_gpu_launches(record: bool = True):
    """fastgan on backend 'triton', launch configs as on EMULATED_GPU, every launch
    recorded (record=False: only called, with its arguments, as a function that does
    nothing) and not run; outputs are not poisoned (a fill per output is test-only
    host work). Yields the list of launches (empty when not recording)."""
    from ..kernels import _common

    with use_backend("triton"), _common.emulating(*EMULATED_GPU), _common.poison_outputs(False):
        with recording_launches(execute=False, record=record) as launches:
            yield launches


@dataclass
class HostResult:
    config: dict
    repeats: int
    eager_ms: list[float] = field(default_factory=list)
    fastgan_ms: list[float] = field(default_factory=list)
    launches_per_step: int = 0
    launch_names: dict = field(default_factory=dict)

    @property
    def eager_median_ms(self) -> float:
        return statistics.median(self.eager_ms)

    @property
    def fastgan_median_ms(self) -> float:
        return statistics.median(self.fastgan_ms)

    @property
    def ratio(self) -> float:
        """fastgan's host time per step over eager's (target: <= 0.5)."""
        return self.fastgan_median_ms / self.eager_median_ms

    @property
    def us_per_launch(self) -> float:
        return self.fastgan_median_ms * 1e3 / max(self.launches_per_step, 1)

    def as_dict(self) -> dict:
        return {"config": self.config, "repeats": self.repeats, "statistic": "median",
                "eager_ms_per_step": self.eager_median_ms, "fastgan_ms_per_step": self.fastgan_median_ms,
                "ratio_fastgan_over_eager": self.ratio, "launches_per_step": self.launches_per_step,
                "us_per_launch": self.us_per_launch, "launch_names": self.launch_names,
                "eager_samples_ms": self.eager_ms, "fastgan_samples_ms": self.fastgan_ms}


def _as_on_gpu(step: dcgan.GANStep) -> dcgan.GANStep:
    """step with the optimizers GANStep makes on a GPU: Adam(fused=True), same
    hyperparameters (PyTorch's fused Adam runs on CPU tensors too)."""
    for name in ("opt_g", "opt_d"):
        opt = getattr(step, name)
        params = [p for group in opt.param_groups for p in group["params"]]
        setattr(step, name, torch.optim.Adam(params, **{**opt.defaults, "foreach": None, "fused": True}))
    return step


def _timed(fn) -> float:
    start = time.thread_time()
    fn()
    return (time.thread_time() - start) * 1e3


def measure_host(cfg: dcgan.StepConfig | None = None, *, repeats: int = 20, warmup: int = 3) -> HostResult:
    """Median host ms/step of eager and of fastgan (launches stubbed), interleaved:
    each repeat times one eager step, then one fastgan step, on the same inputs.
    fastgan's first step runs the layers one by one (a new call signature), its
    second the chains, its third records their launch programs (kernels._program):
    with warmup >= 3 every timed step replays them, as a training run's steps do."""
    _require_interpreter()
    cfg = cfg or host_config()
    if repeats < 1 or warmup < 1:
        raise ValueError(f"repeats and warmup must be >= 1, got repeats={repeats}, warmup={warmup}")
    inputs = dcgan.make_inputs(cfg, sets=1)[0]
    eager = _as_on_gpu(dcgan.GANStep("eager", *dcgan.make_models(cfg), cfg))
    fused = _as_on_gpu(dcgan.GANStep("fastgan", *dcgan.make_models(cfg), cfg))

    def fastgan_step(record=False):
        # Timed steps do not record their launches: recording one (a Launch object, a
        # closure) costs about 3 us, which is the benchmark's, not fastgan's; the count
        # comes from the last warm-up step, which records.
        with stubbed_gpu_launches(record) as launches:
            fused(*inputs)
        return launches

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(warmup):  # first calls: imports, tile tables, caches
            eager(*inputs)
            launches = fastgan_step(record=True)
        result = HostResult(config={k: getattr(cfg, k) for k in dcgan.StepConfig.__dataclass_fields__},
                            repeats=repeats)
        result.launches_per_step = len(launches)
        result.launch_names = dict(collections.Counter(launch.name for launch in launches))
        for _ in range(repeats):
            result.eager_ms.append(_timed(lambda: eager(*inputs)))
            result.fastgan_ms.append(_timed(fastgan_step))
    finally:
        torch.set_num_threads(threads)
    return result


def launch_count(cfg: dcgan.StepConfig | None = None) -> dict:
    """Triton launches of one fastgan training step (default: DCGAN-64, batch 256, bf16
    autocast), launch configs as on EMULATED_GPU, nothing computed. The count is the
    second step's (the first may differ by one-time work)."""
    _require_interpreter()
    cfg = cfg or launch_config()
    step = dcgan.GANStep("fastgan", *dcgan.make_models(cfg), cfg)
    inputs = dcgan.make_inputs(cfg, sets=1)[0]
    counts = []
    for _ in range(2):
        with stubbed_gpu_launches() as launches:
            step(*inputs)
        counts.append(len(launches))
    return {"config": {k: getattr(cfg, k) for k in dcgan.StepConfig.__dataclass_fields__},
            "emulated_gpu": list(EMULATED_GPU), "launches_per_step": counts[-1],
            "by_kernel": dict(collections.Counter(launch.name for launch in launches))}


def run(*, repeats: int = 20, warmup: int = 3, count_launches: bool = True) -> dict:
    """Both figures of the host benchmark, as one record (with the environment)."""
    host = measure_host(repeats=repeats, warmup=warmup)
    record = {"benchmark": "host_overhead", **measure.environment("cpu"), "threads": 1,
              "clock": "thread CPU time (time.thread_time)", "optimizer": "Adam(fused=True) in both, as on a GPU",
              "host": host.as_dict()}
    if count_launches:
        record["real_size"] = launch_count()
    return record


def format_report(record: dict) -> str:
    host = record["host"]
    cfg = dcgan.StepConfig(**host["config"])
    lines = [
        f"host overhead: {cfg.describe()} on {record['device']}, {record['threads']} thread(s); fastgan on backend "
        f"'triton', launch configs as on {EMULATED_GPU[0]}, launches stubbed; fused Adam in both; thread CPU time, "
        f"medians of {host['repeats']} interleaved steps",
        f"  eager    {host['eager_ms_per_step']:8.3f} ms/step (host work + CPU kernels at this size)",
        f"  fastgan  {host['fastgan_ms_per_step']:8.3f} ms/step   {host['launches_per_step']} launches/step "
        f"(stubbed: not run), {host['us_per_launch']:.1f} us/launch",
        f"  fastgan / eager host time: {host['ratio_fastgan_over_eager']:.3f}  (target <= 0.5)",
    ]
    if "real_size" in record:
        real = record["real_size"]
        rcfg = dcgan.StepConfig(**real["config"])
        lines.append(f"launches per step at {rcfg.describe()}, tiles as on {real['emulated_gpu'][0]}: "
                     f"{real['launches_per_step']}  (target <= 70)")
        lines.append("  " + ", ".join(f"{name} {n}" for name, n in sorted(real["by_kernel"].items())))
    return "\n".join(lines)
