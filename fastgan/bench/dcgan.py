"""The DCGAN training-step benchmark: plain torch.nn models, the three providers and
one training step, measured side by side.

Providers:
    eager    the plain torch.nn DCGAN below: cuDNN on a GPU, channels_last, bf16
             autocast for the 16-bit dtype; BCE-with-logits loss
    compile  torch.compile of that same eager model (separate compiles for G and D)
    fastgan  fastgan.nn.fuse of that same model (Conv/ConvT [-> BN] -> act runs become
             fused modules) with the fused GANLoss, on the Triton kernels on a GPU (and
             on a CPU under TRITON_INTERPRET=1), else on the PyTorch reference
    compile-reduce-overhead
             torch.compile(mode="reduce-overhead"): compile, with inductor recording
             CUDA graphs of G's and D's forward and backward (the optimizer steps and
             the losses stay eager)
    fastgan-cuda-graph
             the fastgan step, all of it (both forwards and backwards, the loss, both
             Adam updates) captured in one CUDA graph (fastgan.train.cuda_graph) and
             replayed; each step copies its batch and noise into the graph's inputs
All start from the same weights, see the same inputs and use the same Adam (fused on
CUDA; capturable too under CUDA graphs), autocast and memory format. The last two need
CUDA: on a CPU they are skipped, with the reason in the table and the JSON, rather
than measured as something they are not.

One step, as in pytorch/examples DCGAN: fake = G(z, c); D on real and on the detached
fake, D loss backward, D update; then G through D (D's weight gradients are computed
too, as in the example, and cleared by the next D step), G loss backward, G update.
Its FLOPs (flops.count_flops over one step) at DCGAN-64 are 2.48 GFLOP per image, the
published figure.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import itertools
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .._backend import cpu_kernels_allowed, use_backend
from . import measure
from .flops import count_flops

PROVIDERS = ("eager", "compile", "fastgan", "compile-reduce-overhead", "fastgan-cuda-graph")
# Providers of a single module (the layer and loss/BN benchmarks): the CUDA-graph ones
# are measured on the whole step.
MODULE_PROVIDERS = ("eager", "compile", "fastgan")
# What a provider needs CUDA for (a CPU run skips it, saying so).
CUDA_ONLY = {
    "compile-reduce-overhead": "needs CUDA: reduce-overhead records CUDA graphs (on a CPU it would be plain compile)",
    "fastgan-cuda-graph": "needs CUDA: CUDA graphs record GPU kernels",
}
# Eager steps of fastgan-cuda-graph before capture: one runs every lazy first-call cost
# (Triton compiles, the Adam state); the capture is the next step.
GRAPH_WARMUP = 1
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
CONDS = ("none", "class")
SIZES = (8, 16, 32, 64, 128, 256)


# ------------------------------------------------------------------ the layers
def channel_plan(size: int, width: int) -> list[int]:
    """Generator channels at resolutions 4, 8, ..., size/2 (DCGAN: 8w, 4w, 2w, w at 64 px)."""
    stages = int(math.log2(size)) - 2
    return [width * 2 ** (stages - 1 - i) for i in range(stages)]


def layer_specs(size: int = 64, width: int = 64, latent: int = 100, channels: int = 3) -> list[dict]:
    """Every conv layer of the DCGAN generator (G0..) and discriminator (D0..) in order:
    name, transposed, c_in, c_out, hw (input side), stride, padding, act, bn (whether a
    batch norm sits between the conv and the activation in the DCGAN model). The head
    D<k> is the example's conv + sigmoid; the models below return its logits."""
    plan = channel_plan(size, width)
    specs = []
    prev, hw = latent, 1
    for i, ch in enumerate(plan):
        s, p = (1, 0) if i == 0 else (2, 1)
        specs.append(dict(name=f"G{i}", transposed=True, c_in=prev, c_out=ch, hw=hw, stride=s, padding=p, act="relu", bn=True))
        prev, hw = ch, (4 if i == 0 else hw * 2)
    specs.append(dict(name=f"G{len(plan)}", transposed=True, c_in=prev, c_out=channels, hw=hw, stride=2, padding=1,
                      act="tanh", bn=False))
    rplan = list(reversed(plan))
    prev, hw = channels, size
    for i, ch in enumerate(rplan):
        specs.append(dict(name=f"D{i}", transposed=False, c_in=prev, c_out=ch, hw=hw, stride=2, padding=1, act="lrelu",
                          bn=i > 0))
        prev, hw = ch, hw // 2
    specs.append(dict(name=f"D{len(rplan)}", transposed=False, c_in=prev, c_out=1, hw=hw, stride=1, padding=0,
                      act="sigmoid", bn=False))
    return specs


def activation(act: str) -> nn.Module:
    return {"relu": lambda: nn.ReLU(), "lrelu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh,
            "sigmoid": nn.Sigmoid}[act]()


def layer_module(spec: dict, *, bn: bool, bias: bool | None = None, act: bool = True) -> nn.Sequential:
    """conv -> [BatchNorm2d] -> activation in plain torch.nn. By default the conv has a
    bias exactly when there is no batch norm (which would cancel it); the DCGAN models
    pass bias=False throughout, as pytorch/examples does."""
    conv_type = nn.ConvTranspose2d if spec["transposed"] else nn.Conv2d
    bias = not bn if bias is None else bias
    parts = [conv_type(spec["c_in"], spec["c_out"], 4, spec["stride"], spec["padding"], bias=bias)]
    if bn:
        parts.append(nn.BatchNorm2d(spec["c_out"]))
    if act:
        parts.append(activation(spec["act"]))
    return nn.Sequential(*parts)


def _init(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), batch-norm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class PlainGenerator(nn.Module):
    """The DCGAN generator in plain torch.nn (pytorch/examples at 64 px, width 64).
    Class-conditional: a learned class embedding is concatenated to z."""

    def __init__(self, size=64, width=64, latent=100, channels=3, *, classes=0, cond_dim=128):
        super().__init__()
        self.latent = latent
        self.embed = nn.Embedding(classes, cond_dim) if classes else None
        specs = [s for s in layer_specs(size, width, latent + (cond_dim if classes else 0), channels) if s["name"][0] == "G"]
        self.body = nn.Sequential(*[m for s in specs for m in layer_module(s, bn=s["bn"], bias=False)])

    def forward(self, z, c=None):
        if self.embed is not None:
            z = torch.cat([z, self.embed(c).to(z.dtype)], dim=1)
        # z as a 1x1 image in channels_last strides (N, C, 1, 1) @ (C, 1, C, C), like
        # every other activation here. With z[:, :, None, None]'s strides (C, 1, 1, 1),
        # torch 2.11's inductor predicts a channels_last weight gradient for the first
        # transposed conv while cuDNN returns a contiguous one, and the compiled
        # backward fails its stride check (seen on an H200).
        return self.body(z.reshape(z.shape[0], 1, 1, -1).permute(0, 3, 1, 2))


class PlainDiscriminator(nn.Module):
    """The DCGAN discriminator in plain torch.nn, returning logits (the example's final
    sigmoid lives in the loss). Class-conditional by projection (Miyato & Koyama 2018)."""

    def __init__(self, size=64, width=64, channels=3, *, classes=0):
        super().__init__()
        specs = [s for s in layer_specs(size, width, 1, channels) if s["name"][0] == "D"]
        self.features = nn.Sequential(*[m for s in specs[:-1] for m in layer_module(s, bn=s["bn"], bias=False)])
        self.head = nn.Conv2d(specs[-1]["c_in"], 1, 4, 1, 0, bias=False)
        self.embed = nn.Embedding(classes, specs[-1]["c_in"]) if classes else None

    def forward(self, x, c=None):
        h = self.features(x)
        logits = self.head(h).flatten()
        if self.embed is not None:
            logits = logits + (self.embed(c) * h.sum(dim=(2, 3))).sum(dim=1).to(logits.dtype)
        return logits


# ------------------------------------------------------------------ providers
def skip_reason(provider: str, device) -> str | None:
    """Why `provider` cannot be measured on `device` (None when it can)."""
    return None if measure.is_cuda(device) else CUDA_ONLY.get(provider)


def fastgan_backend(device) -> str:
    """The backend the fastgan provider runs: the Triton kernels on a GPU (and on a CPU
    under Triton's interpreter), else the PyTorch reference."""
    return "triton" if measure.is_cuda(device) or cpu_kernels_allowed() else "reference"


def wrap(provider: str, module: nn.Module) -> nn.Module:
    """The provider's version of a plain module (a copy for fastgan; the compiled
    wrapper shares the module's parameters)."""
    if provider == "eager":
        return module
    if provider == "compile":
        return torch.compile(module)
    if provider == "compile-reduce-overhead":
        return torch.compile(module, mode="reduce-overhead")
    if provider in ("fastgan", "fastgan-cuda-graph"):
        from ..nn import BatchNormAct2d, Conv2dAct, ConvTranspose2dAct, LinearAct, fuse

        fused = fuse(module)
        # A fastgan row that silently ran plain PyTorch would be a wrong measurement.
        if not any(isinstance(m, (BatchNormAct2d, Conv2dAct, ConvTranspose2dAct, LinearAct)) for m in fused.modules()):
            raise ValueError(f"fuse() found nothing to fuse in {type(module).__name__}: no fastgan provider for it")
        return fused
    raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")


def provider_context(provider: str, device):
    """What a provider's calls run inside: the fastgan backend for fastgan."""
    return use_backend(fastgan_backend(device)) if provider.startswith("fastgan") else contextlib.nullcontext()


# ------------------------------------------------------------------ the step
@dataclass
class StepConfig:
    batch: int = 64
    size: int = 64
    width: int = 64
    latent: int = 100
    channels: int = 3
    dtype: str = "float32"
    cond: str = "none"
    classes: int = 10
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self):
        for name in ("batch", "width", "latent", "channels", "classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.cond not in CONDS:
            raise ValueError(f"cond must be one of {CONDS}, got {self.cond!r}")

    @property
    def n_classes(self) -> int:
        return self.classes if self.cond == "class" else 0

    def autocast(self, cache_enabled: bool | None = None):
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16",
                              cache_enabled=cache_enabled)

    def describe(self) -> str:
        cond = "unconditional" if self.cond == "none" else f"class-conditional ({self.classes} classes)"
        return (f"DCGAN-{self.size} (width {self.width}, latent {self.latent}) {cond}, batch {self.batch}, "
                f"{self.dtype}")


def make_models(cfg: StepConfig) -> tuple[nn.Module, nn.Module]:
    """The plain (eager) G and D, seeded, on the device, channels_last."""
    torch.manual_seed(cfg.seed)
    G = PlainGenerator(cfg.size, cfg.width, cfg.latent, cfg.channels, classes=cfg.n_classes)
    D = PlainDiscriminator(cfg.size, cfg.width, cfg.channels, classes=cfg.n_classes)
    for m in (G, D):
        _init(m)
        m.to(cfg.device, memory_format=torch.channels_last)
    return G, D


def make_inputs(cfg: StepConfig, sets: int = 3) -> list[tuple]:
    """`sets` batches (real images in [-1, 1], labels or None, noise), rotated through
    by the timed steps; random, never zeros."""
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 1)
    out = []
    for _ in range(sets):
        real = torch.rand(cfg.batch, cfg.channels, cfg.size, cfg.size, device=cfg.device, generator=gen) * 2 - 1
        real = real.contiguous(memory_format=torch.channels_last)
        c = (torch.randint(cfg.classes, (cfg.batch,), device=cfg.device, generator=gen)
             if cfg.cond == "class" else None)
        z = torch.randn(cfg.batch, cfg.latent, device=cfg.device, generator=gen)
        out.append((real, c, z))
    return out


def _eager_d_loss(real_logits, fake_logits):
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def _eager_g_loss(fake_logits):
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


class GANStep:
    """One training step of a provider on its own copy of G and D."""

    def __init__(self, provider: str, G: nn.Module, D: nn.Module, cfg: StepConfig):
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
        reason = skip_reason(provider, cfg.device)
        if reason is not None:
            raise ValueError(f"provider {provider!r} on {cfg.device}: {reason}")
        self.provider, self.cfg = provider, cfg
        self.graphed = provider == "fastgan-cuda-graph"
        compiled = provider.startswith("compile")
        self.G = wrap(provider, copy.deepcopy(G) if compiled else G)
        self.D = wrap(provider, copy.deepcopy(D) if compiled else D)
        if provider.startswith("fastgan"):
            from ..nn import GANLoss

            loss = GANLoss("nonsaturating")
            self.d_loss, self.g_loss = loss.discriminator, loss.generator
        else:
            self.d_loss, self.g_loss = _eager_d_loss, _eager_g_loss
        fused = True if measure.is_cuda(cfg.device) else None
        adam = dict(lr=2e-4, betas=(0.5, 0.999), fused=fused, capturable=self.graphed)
        self.opt_g = torch.optim.Adam(self.G.parameters(), **adam)
        self.opt_d = torch.optim.Adam(self.D.parameters(), **adam)
        self.graph = None  # fastgan-cuda-graph: the CapturedStep, made on the first call

    def _autocast(self):
        # fastgan's steps, graphed or not, keep autocast's weight cache off: CUDA graphs
        # need it off, and with it on a weight used twice in one region (D on real and on
        # fake) shares one cast, so its two gradients are summed in bf16 before the cast
        # back, and the two steps would differ in the last bits (seen on an H200).
        return self.cfg.autocast(cache_enabled=False) if self.provider.startswith("fastgan") else self.cfg.autocast()

    def _step(self, real, c, z) -> tuple[torch.Tensor, torch.Tensor]:
        with provider_context(self.provider, self.cfg.device):
            with self._autocast():
                fake = self.G(z, c)
                d_loss = self.d_loss(self.D(real, c), self.D(fake.detach(), c)).float()
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            with self._autocast():
                g_loss = self.g_loss(self.D(fake, c)).float()
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_g.step()
        return d_loss.detach(), g_loss.detach()

    def __call__(self, real, c, z) -> tuple[torch.Tensor, torch.Tensor]:
        if self.provider == "compile-reduce-overhead":
            # A new iteration: outputs of the previous one's CUDA graphs may be reused.
            torch.compiler.cudagraph_mark_step_begin()
        if not self.graphed:
            return self._step(real, c, z)
        given = {"real": real, "z": z} if c is None else {"real": real, "z": z, "c": c}
        if self.graph is None:
            from ..train.cuda_graph import CapturedStep

            static = {name: t.clone() for name, t in given.items()}  # clone keeps channels_last
            self.graph = CapturedStep(lambda real, z, c=None: self._step(real, c, z), static, warmup=GRAPH_WARMUP,
                                      optimizers=(self.opt_d, self.opt_g))
        d_loss, g_loss = self.graph(**given)
        return d_loss.clone(), g_loss.clone()  # the graph's outputs are overwritten by the next replay


def step_flops(cfg: StepConfig) -> dict:
    """FLOPs of one training step, counted on the eager models over one step."""
    G, D = make_models(cfg)
    step = GANStep("eager", G, D, cfg)
    real, c, z = make_inputs(cfg, sets=1)[0]
    with count_flops(G, D) as count:
        step(real, c, z)
    return {"forward": count.forward, "backward": count.backward, "total": count.total,
            "per_image": count.total / cfg.batch}


# ------------------------------------------------------------------ the benchmark
@dataclass
class StepResult:
    config: dict
    flops: dict
    matmul: dict
    records: list[dict] = field(default_factory=list)
    environment: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"benchmark": "gan_step", **self.environment, "config": self.config, "timing": self.timing,
                "flops_per_step": self.flops, "matmul": self.matmul, "records": self.records,
                "summary": summary(self.records)}


RATIO_BASES = ("eager", "compile", "fastgan")


def add_ratios(records: list[dict]) -> list[dict]:
    """vs_<provider> = that provider's ms/step over this one's: > 1 is faster than it
    (None where either was not measured: skipped or failed)."""
    ms = {r["provider"]: r["ms_per_step"] for r in records if r.get("ms_per_step") is not None}
    eager = next((q for q in records if q["provider"] == "eager"), None)
    for r in records:
        for other in RATIO_BASES:
            r[f"vs_{other}"] = ms[other] / r["ms_per_step"] if other in ms and r.get("ms_per_step") else None
        r["peak_memory_vs_eager"] = (r["peak_memory_bytes"] / eager["peak_memory_bytes"]
                                     if eager and r.get("peak_memory_bytes") and eager.get("peak_memory_bytes") else None)
    return records


def summary(records: list[dict]) -> dict:
    """The issue's targets (H100, bf16, batch 256): fastgan >= 2x eager, >= 1.25x
    compile, peak memory <= 0.7x eager; judged on what this run measured. With CUDA
    graphs: each graphed provider against eager, compile and (fastgan's) its ungraphed
    self."""
    by = {r["provider"]: r for r in records if r.get("ms_per_step") is not None}
    out = {}
    fast = by.get("fastgan")
    if fast is not None:
        out.update({"fastgan_vs_eager": fast["vs_eager"], "fastgan_vs_compile": fast["vs_compile"],
                    "fastgan_peak_memory_vs_eager": fast["peak_memory_vs_eager"]})
        if fast["vs_eager"] is not None:
            out["target_2x_eager_met"] = fast["vs_eager"] >= 2.0
        if fast["vs_compile"] is not None:
            out["target_1.25x_compile_met"] = fast["vs_compile"] >= 1.25
        if fast["peak_memory_vs_eager"] is not None:
            out["target_0.7x_memory_met"] = fast["peak_memory_vs_eager"] <= 0.7
    for name in ("fastgan-cuda-graph", "compile-reduce-overhead"):
        if name in by:
            key = name.replace("-", "_")
            out.update({f"{key}_vs_{other}": by[name][f"vs_{other}"] for other in RATIO_BASES if other != name})
    return out


def provider_warmup(provider: str, warmup: int) -> int:
    """Untimed steps for `provider`: at least its eager warm-up and its capture for
    fastgan-cuda-graph (the capture is a warm-up cost, like a compile)."""
    return max(warmup, GRAPH_WARMUP + 1) if provider == "fastgan-cuda-graph" else warmup


def bench_provider(provider: str, cfg: StepConfig, *, warmup: int, steps: int, inputs=None) -> dict:
    """Build the provider's step from fresh seeded models, warm it up (compiles and
    captures happen there), time `steps` steps; peak memory covers warm-up and timed
    steps."""
    warmup = provider_warmup(provider, warmup)
    inputs = inputs or make_inputs(cfg)
    gc.collect()
    if measure.is_cuda(cfg.device):
        torch.cuda.empty_cache()
    measure.reset_peak_memory(cfg.device)
    G, D = make_models(cfg)
    step = GANStep(provider, G, D, cfg)
    batches = itertools.cycle(inputs)
    losses = []

    def one():
        losses.append(step(*next(batches)))

    timing = measure.time_ms(one, cfg.device, warmup=warmup, reps=steps)
    peak = measure.peak_memory_bytes(cfg.device)
    finite = all(bool(torch.isfinite(d)) and bool(torch.isfinite(g)) for d, g in losses)
    ms = timing.median_ms
    return {
        "provider": provider, "ms_per_step": ms, "images_per_s": cfg.batch / (ms * 1e-3),
        "samples_ms": timing.samples_ms, "spread": timing.spread, "peak_memory_bytes": peak,
        "losses_finite": finite, "last_d_loss": float(losses[-1][0]), "last_g_loss": float(losses[-1][1]),
        "backend": fastgan_backend(cfg.device) if provider.startswith("fastgan") else None, "warmup_steps": warmup,
    }


def unmeasured_record(provider: str, cfg: StepConfig, *, skipped: str | None = None, error: str | None = None) -> dict:
    """The row of a provider that was skipped (with the reason) or failed (with the
    error): every measurement None, never a number it did not earn."""
    return {
        "provider": provider, "skipped": skipped, "error": error, "ms_per_step": None, "images_per_s": None,
        "samples_ms": [], "spread": None, "peak_memory_bytes": None, "losses_finite": None, "last_d_loss": None,
        "last_g_loss": None, "tflops": None, "mfu": None,
        "backend": fastgan_backend(cfg.device) if provider.startswith("fastgan") else None,
    }


def run(cfg: StepConfig, providers=PROVIDERS, *, warmup: int = 3, steps: int = 10, log=None,
        on_record=None) -> StepResult:
    """The step-level comparison on cfg.device: the dense matmul rate first (for MFU),
    the step's FLOPs, then each provider. A provider that needs CUDA is skipped on a
    CPU; one that raises is recorded as failed with its error (the others are still
    measured: a device run is short and one failure should not cost the rest).
    on_record(result so far) is called after each provider, so that a run stopped at a
    time limit still leaves the rows it measured."""
    bad = [p for p in providers if p not in PROVIDERS]
    if bad or not providers:
        raise ValueError(f"providers must be a non-empty subset of {PROVIDERS}, got {list(providers)!r}")
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1 (compiles and autotuning happen there), got {warmup}")
    matmul = measure.matmul_tflops(cfg.device)
    flops = step_flops(cfg)
    inputs = make_inputs(cfg)
    config = {k: getattr(cfg, k) for k in StepConfig.__dataclass_fields__}
    environment = measure.environment(cfg.device)
    timing = {"warmup_steps": warmup, "timed_steps": steps, "statistic": "median",
              "clock": "cuda events" if measure.is_cuda(cfg.device) else "perf_counter"}

    def result() -> StepResult:
        return StepResult(config=config, flops=flops, matmul=matmul, records=add_ratios([dict(r) for r in records]),
                          environment=environment, timing=timing)

    records = []
    for provider in providers:
        records.append(_measure_provider(provider, cfg, warmup=warmup, steps=steps, inputs=inputs, matmul=matmul,
                                         flops=flops, log=log))
        if on_record is not None:
            on_record(result())
    return result()


def _measure_provider(provider: str, cfg: StepConfig, *, warmup, steps, inputs, matmul, flops, log) -> dict:
    """One provider's row: measured, or skipped / failed with the reason."""
    reason = skip_reason(provider, cfg.device)
    if reason is not None:
        if log:
            log(f"{provider}: skipped ({reason})")
        return unmeasured_record(provider, cfg, skipped=reason)
    if log:
        log(f"{provider}: warming up ({warmup} step(s)) and timing {steps}")
    try:
        rec = bench_provider(provider, cfg, warmup=warmup, steps=steps, inputs=inputs)
    except Exception as error:  # recorded, reported as a failure by the caller, never dropped
        text = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        if log:
            log(f"{provider}: failed ({text})")
        return unmeasured_record(provider, cfg, error=text)
    rec.update(skipped=None, error=None)
    rec["tflops"] = flops["total"] / (rec["ms_per_step"] * 1e-3) / 1e12
    rec["mfu"] = rec["tflops"] / matmul["tflops"]
    if log:
        log(f"{provider}: {rec['ms_per_step']:.3f} ms/step")
    return rec


# ------------------------------------------------------------------ the table
COLUMNS = ("provider", "images/s", "ms/step", "x eager", "x compile", "MFU", "peak memory")


def _si(value: float) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}"
    return f"{value:.3g} "


def _fmt(value, pattern, missing="n/a"):
    return missing if value is None else format(value, pattern)


def format_table(result: dict) -> str:
    """The printed table (from as_dict()): one row per provider, COLUMNS."""
    cfg = result["config"]
    flops = result["flops_per_step"]
    mm = result["matmul"]
    head = [
        f"{StepConfig(**cfg).describe()} on {result['device']}",
        f"FLOPs/step {_si(flops['total'])}FLOP ({_si(flops['per_image'])}FLOP/image); "
        f"dense {mm['dtype']} matmul measured {mm['tflops']:.2f} TFLOP/s (the MFU denominator)",
        "x eager / x compile: that provider's ms/step over this one's (> 1: faster); medians of "
        f"{result['timing']['timed_steps']} steps after {result['timing']['warmup_steps']} warm-up",
    ]
    rows = [COLUMNS]
    notes = []
    for r in result["records"]:
        if r.get("ms_per_step") is None:  # skipped or failed: said so, no numbers
            word = "skipped" if r.get("skipped") else "failed"
            rows.append((r["provider"], word) + ("-",) * (len(COLUMNS) - 2))
            notes.append(f"{r['provider']} {word}: {r.get('skipped') or r.get('error')}")
            continue
        mem = r["peak_memory_bytes"]
        rows.append((
            r["provider"], f"{r['images_per_s']:.1f}", f"{r['ms_per_step']:.3f}", _fmt(r["vs_eager"], ".3g"),
            _fmt(r["vs_compile"], ".3g"), f"{r['mfu'] * 100:.3g}%", "n/a" if mem is None else f"{mem / 2**20:.1f} MiB",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    return "\n".join(head + [""] + lines + notes)
