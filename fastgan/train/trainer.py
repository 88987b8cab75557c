"""fastgan.Trainer: the GAN training loop.

One step = n_critic discriminator updates, each on a fresh real batch, then one
generator update. The global batch (batch_size samples) is split evenly across the
processes of a torchrun launch and, within each, into `accumulate` micro-batches whose
gradients add up before the optimizer step; indices and noise are drawn for the whole
global batch in every process, so the samples a step sees do not depend on how many
processes share it.

This file is the loop and the steps; what it works with lives beside it, each usable
alone: checkpoint.py (the checkpoint's layout and what restoring one means),
signals.py (stopping on SIGINT/SIGTERM), distributed.py (processes, batch split, DDP)
and run_log.py (metrics.jsonl, progress bar, sample grid and plots).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from ..nn import GANLoss
from ..reference.loss import KINDS
from . import checkpoint as ckpt
from . import distributed, run_log
from .augment import augment as apply_augment
from .augment import parse_policy
from .cuda_graph import CapturedStep, cuda_graph_unsupported
from .ema import EMA
from .order import BatchOrder
from .run_log import GRID_COLUMNS
from .signals import StopSignals


GRAPH_WARMUP = 3  # eager runs of each kind of step before its CUDA graph is captured


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite: the run stopped without writing a checkpoint."""


def _check(name, value, ok, expected):
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _int(name, value, minimum):
    _check(name, value, isinstance(value, int) and not isinstance(value, bool) and value >= minimum, f"an int >= {minimum}")
    return value


def _nonneg(name, value):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    _check(name, value, ok, "a finite number >= 0")
    return float(value)


class Trainer:
    """Trains `generator` against `discriminator` on `data`.

    generator(z, c) and discriminator(x, c) follow fastgan.models (a `latent_dim`
    attribute and a `config()`, c None when unconditional); data[indices] gives (x, c)
    for a LongTensor of indices (fastgan.data.ArrayData does).

    loss: a GANLoss kind ('nonsaturating', 'minimax', 'lsgan', 'hinge', 'wasserstein').
    r1: the R1 penalty weight gamma (0 disables), applied lazily every r1_interval
        discriminator updates with weight gamma/2 * r1_interval.
    ema: the decay of the generator's moving average (0 or None disables).
    augment: DiffAugment policies for what D sees, real and generated alike, in both
        updates ('translation,cutout', '' for none; fastgan.train.augment). Images only;
        draws from the noise generator.
    amp: bf16 autocast ('auto': on CUDA only). Adam is fused on CUDA.
    cuda_graph: capture each step (both updates, the loss, the EMA) in a CUDA graph and
        replay it (fastgan.train.cuda_graph; CUDA only, not under torchrun). A step with
        the lazy R1 penalty and one without are two graphs; each is captured after
        GRAPH_WARMUP eager runs of its kind. Results are those of the eager step.
    run_dir: where checkpoint.pt, metrics.jsonl, samples.png, samples/ and losses.png
        go (process 0 only); None writes nothing.
    config: plain data stored in the checkpoint under config['run'] (what a command
        line needs to rebuild the data, names of conditions, ...).
    """

    def __init__(
        self, generator: nn.Module, discriminator: nn.Module, data, *, run_dir=None,
        loss: str = "nonsaturating", batch_size: int = 64, g_lr: float = 2e-4, d_lr: float = 2e-4,
        betas=(0.5, 0.999), n_critic: int = 1, r1: float = 0.0, r1_interval: int = 16,
        ema: float | None = 0.999, amp="auto", accumulate: int = 1, checkpoint_every: int = 500,
        sample_every: int = 250, log_every: int = 10, seed: int = 0, device=None, progress: bool = True,
        config: dict | None = None, cuda_graph: bool = False, augment: str = "",
    ):
        if loss not in KINDS:
            raise ValueError(f"loss must be one of {KINDS}, got {loss!r}")
        self.settings = dict(
            loss=loss, batch_size=_int("batch_size", batch_size, 1), g_lr=_nonneg("g_lr", g_lr),
            d_lr=_nonneg("d_lr", d_lr), betas=[float(b) for b in betas], n_critic=_int("n_critic", n_critic, 1),
            r1=_nonneg("r1", r1), r1_interval=_int("r1_interval", r1_interval, 1),
            ema=_nonneg("ema", ema or 0.0), amp=amp, accumulate=_int("accumulate", accumulate, 1),
            checkpoint_every=_int("checkpoint_every", checkpoint_every, 1),
            sample_every=_int("sample_every", sample_every, 1), log_every=_int("log_every", log_every, 1),
            seed=_int("seed", seed, 0), augment=",".join(parse_policy(augment)),
        )
        _check("betas", betas, len(self.settings["betas"]) == 2 and all(0 <= b < 1 for b in self.settings["betas"]), "two numbers in [0, 1)")
        _check("amp", amp, amp in ("auto", True, False), "'auto', True or False")
        if self.settings["ema"] >= 1:
            raise ValueError(f"ema must be in [0, 1) (0 disables it), got {ema!r}")
        if not len(data):
            raise ValueError("data is empty")
        _check("cuda_graph", cuda_graph, isinstance(cuda_graph, bool), "True or False")
        self.augment = parse_policy(augment)
        if self.augment and not getattr(data, "is_image", True):
            raise ValueError(f"augment={augment!r}: DiffAugment transforms images; this data is not images")
        if self.augment and cuda_graph:
            raise ValueError("augment and cuda_graph=True: the augmentation's random draws are not captured; "
                             "train with cuda_graph=False")

        self.world, self.device = distributed.setup(device)
        self.local_batch, self.micro_batch = distributed.split_batch(batch_size, self.world, accumulate)
        self.amp = self.device.type == "cuda" if amp == "auto" else bool(amp)
        if cuda_graph:
            _check_graphable(generator, discriminator)
            why = cuda_graph_unsupported(self.device)
            if why is not None:
                raise ValueError(f"cuda_graph=True: {why}; train with cuda_graph=False on {self.device}")
            if self.world.distributed:
                raise ValueError(
                    "cuda_graph=True is not supported under torchrun: DDP's gradient all-reduce is not captured; "
                    "train with cuda_graph=False"
                )
        self.cuda_graph = cuda_graph
        self.user_config = config or {}
        self.progress = progress

        self.G = generator.to(self.device)
        self.D = discriminator.to(self.device)
        self.latent_dim = self.G.latent_dim
        self._data_on_device = hasattr(data, "to")
        self.data = data.to(self.device) if self._data_on_device else data
        self.loss = GANLoss(loss)
        adam = dict(betas=tuple(self.settings["betas"]), **_adam_options(self.device, cuda_graph))
        self.g_opt = torch.optim.Adam(self.G.parameters(), lr=g_lr, **adam)
        self.d_opt = torch.optim.Adam(self.D.parameters(), lr=d_lr, **adam)
        self.ema = EMA(self.G, self.settings["ema"]) if self.settings["ema"] > 0 else None
        self.G_train = distributed.wrap(self.G, self.world, self.device)
        self.D_train = distributed.wrap(self.D, self.world, self.device)

        self.order = BatchOrder(len(data), seed)
        self.noise = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.step = 0
        self.d_steps = 0
        self.history: list[dict] = []
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._stop = StopSignals()
        self._pending: list[torch.Tensor] = []
        self._grid = None
        self._saved = None  # (path, step) of the last checkpoint written or loaded
        # CUDA graphs: one per R1 pattern, sharing the static inputs and a memory pool.
        self._graphs: dict[tuple, CapturedStep] = {}
        self._static: dict[str, torch.Tensor] | None = None
        self._graph_pool = None

    # ------------------------------------------------------------------ the steps
    def _autocast(self):
        # No autocast weight cache, with or without CUDA graphs. Graphs need it off (its
        # casts would be recorded once and its entries freed at the end of the region;
        # torch requires the same of make_graphed_callables). And with it on, a weight
        # used twice in one region (D on real and on fake) shares one cast, so its two
        # gradients are summed in bf16 before the cast back: the eager step would differ
        # from the graphed one in the last bits (seen on an H200). Off, each use casts
        # its own copy and the gradients are summed in float32.
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp, cache_enabled=False)

    def _global_noise(self) -> torch.Tensor:
        """This process's share of noise drawn for the whole global batch."""
        z = torch.randn(self.settings["batch_size"], self.latent_dim, generator=self.noise, device=self.device)
        return z[distributed.process_share(self.world, self.local_batch)]

    def _to_device(self, idx: torch.Tensor) -> torch.Tensor:
        """Indices for data that lives on the device: through pinned memory without
        waiting for the GPU (a pageable host-to-device copy synchronizes the stream)."""
        if self.device.type != "cuda" or not self._data_on_device:
            return idx
        return idx.pin_memory().to(self.device, non_blocking=True)

    def _augmented(self, x: torch.Tensor) -> torch.Tensor:
        return apply_augment(x, self.augment, self.noise) if self.augment else x

    def _micro_batches(self, model):
        return distributed.micro_batches(self.settings["accumulate"], model, self.world)

    def _r1_pattern(self) -> tuple[bool, ...]:
        """Which of this step's D updates apply the lazy R1 penalty (host-known)."""
        r1, interval = self.settings["r1"], self.settings["r1_interval"]
        return tuple(r1 > 0 and (self.d_steps + j) % interval == 0 for j in range(self.settings["n_critic"]))

    def _draw_batches(self) -> tuple[list, list, list, torch.Tensor]:
        """The host's part of a step: per D update its real batch, conditions and noise,
        then the G update's noise, in the order the eager Trainer has always drawn them."""
        reals, conds, zs = [], [], []
        for _ in range(self.settings["n_critic"]):
            idx = self.order.next(self.settings["batch_size"])
            idx = idx[distributed.process_share(self.world, self.local_batch)]
            real, c = self.data[self._to_device(idx)]
            reals.append(real)
            conds.append(c)
            zs.append(self._global_noise())
        return reals, conds, zs, self._global_noise()

    def _d_step(self, real_batch, c_batch, z, lazy_r1: bool) -> tuple[torch.Tensor, torch.Tensor]:
        r1 = self.settings["r1"]
        n = self.settings["accumulate"]
        d_total = torch.zeros((), device=self.device)
        r1_total = torch.zeros((), device=self.device)
        self.d_opt.zero_grad(set_to_none=True)
        for i, sync in self._micro_batches(self.D_train):
            part = slice(i * self.micro_batch, (i + 1) * self.micro_batch)
            real, c = real_batch[part], None if c_batch is None else c_batch[part]
            with sync:
                with self._autocast():
                    with torch.no_grad():
                        fake = self.G(z[part], c)
                    if lazy_r1:
                        real = real.detach().requires_grad_(True)
                    real_logits = self.D_train(self._augmented(real), c)
                    fake_logits = self.D_train(self._augmented(fake), c)
                    loss = self.loss.discriminator(real_logits, fake_logits).float()
                total = loss
                if lazy_r1:
                    (grad,) = torch.autograd.grad(real_logits.float().sum(), real, create_graph=True)
                    penalty = grad.float().square().flatten(1).sum(1).mean()
                    total = loss + (0.5 * r1 * self.settings["r1_interval"]) * penalty
                    r1_total += penalty.detach() / n
                (total / n).backward()
            d_total += loss.detach() / n
        self.d_opt.step()
        return d_total, r1_total

    def _g_step(self, c_batch, z) -> torch.Tensor:
        n = self.settings["accumulate"]
        g_total = torch.zeros((), device=self.device)
        self.g_opt.zero_grad(set_to_none=True)
        # D is only read here: its weights get no gradient, and the plain module (not
        # the DDP wrapper) is called so that DDP never waits for gradients D won't get.
        self.D.requires_grad_(False)
        try:
            for i, sync in self._micro_batches(self.G_train):
                part = slice(i * self.micro_batch, (i + 1) * self.micro_batch)
                c = None if c_batch is None else c_batch[part]
                with sync:
                    with self._autocast():
                        loss = self.loss.generator(self.D(self._augmented(self.G_train(z[part], c)), c)).float()
                    (loss / n).backward()
                g_total += loss.detach() / n
        finally:
            self.D.requires_grad_(True)
        self.g_opt.step()
        if self.ema is not None:
            self.ema.update(self.G)
        return g_total

    def _step_body(self, pattern, reals, conds, z_d, z_g) -> torch.Tensor:
        """The device's part of a step, the part a CUDA graph captures: n_critic D
        updates on (reals[j], conds[j], z_d[j]) with lazy R1 where pattern[j], then the
        G update on z_g and the last batch's conditions. Returns [d_loss (mean over the
        D updates), g_loss, r1 (max)]. No host sync (tests/test_no_host_sync.py)."""
        d_losses, r1s = [], []
        for j, lazy_r1 in enumerate(pattern):
            d, r = self._d_step(reals[j], None if conds is None else conds[j], z_d[j], lazy_r1)
            d_losses.append(d)
            r1s.append(r)
        g = self._g_step(None if conds is None else conds[-1], z_g)
        return torch.stack([torch.stack(d_losses).mean(), g, torch.stack(r1s).max()])

    def _graph_step(self, pattern, reals, conds, z_d, z_g) -> torch.Tensor:
        """The step through the CUDA graph of its R1 pattern (captured on first use,
        after warm-up): this step's batches go into the static input buffers."""
        if self._static is None:
            self._static = {"real": torch.stack(reals), "z_d": torch.stack(z_d), "z_g": z_g.clone()}
            if conds[0] is not None:
                self._static["cond"] = torch.stack(conds)
        else:
            for j, (real, c, z) in enumerate(zip(reals, conds, z_d)):
                self._static["real"][j].copy_(real)
                self._static["z_d"][j].copy_(z)
                if c is not None:
                    self._static["cond"][j].copy_(c)
            self._static["z_g"].copy_(z_g)
        graph = self._graphs.get(pattern)
        if graph is None:
            if self._graph_pool is None:
                self._graph_pool = torch.cuda.graph_pool_handle()

            def body(real, z_d, z_g, cond=None, pattern=pattern):
                return self._step_body(pattern, real, cond, z_d, z_g)

            graph = self._graphs[pattern] = CapturedStep(body, self._static, warmup=GRAPH_WARMUP,
                                                         pool=self._graph_pool, optimizers=(self.d_opt, self.g_opt))
        return graph().clone()  # the static output is overwritten by the next replay

    def train_step(self) -> dict:
        """One step (n_critic D updates and one G update); returns its losses as tensors."""
        self.G.train()
        self.D.train()
        pattern = self._r1_pattern()
        batches = self._draw_batches()
        losses = self._graph_step(pattern, *batches) if self.cuda_graph else self._step_body(pattern, *batches)
        self.d_steps += len(pattern)
        self.step += 1
        return {"d_loss": losses[0], "g_loss": losses[1], "r1": losses[2]}

    # ------------------------------------------------------------------ the loop
    def fit(self, steps: int) -> dict:
        """Train until `steps` steps are done in total (a resumed run continues from its
        checkpoint's step). SIGINT/SIGTERM stop it after the current step with a
        checkpoint; a NaN/inf loss raises NonFiniteLossError and writes nothing.
        Returns {'step', 'seconds', 'steps_per_s', 'interrupted' (signal name or None)}."""
        _int("steps", steps, 0)
        if self.run_dir is not None and self.world.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            history = run_log.trim_metrics(self.run_dir, self.step)
            if history is not None:
                self.history = history
        progress = None
        if self.progress and self.world.is_main:
            progress = run_log.progress_bar(steps, self.step)
        start_step, start = self.step, time.perf_counter()
        self._interval_start = (self.step, start)
        self._stop.install()
        try:
            while self.step < steps:
                self._pending.append(torch.stack(list(self.train_step().values())).detach())
                if progress is not None:
                    progress.update(1)
                s = self.step
                at_checkpoint = s % self.settings["checkpoint_every"] == 0 or s == steps
                at_sample = s % self.settings["sample_every"] == 0 or s == steps
                stop_now = self._stop.requested and not self.world.distributed
                if s % self.settings["log_every"] == 0 or at_checkpoint or at_sample or stop_now:
                    record, stop = self._flush_metrics()  # raises on a non-finite loss
                    if progress is not None:
                        progress.set_postfix(d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}", refresh=False)
                    if at_sample or stop:
                        self.write_pictures()
                    if at_checkpoint or stop:
                        self.save()
                    if stop:
                        break
        finally:
            if progress is not None:
                progress.close()
            self._stop.restore()
        seconds = time.perf_counter() - start
        done = self.step - start_step
        return {"step": self.step, "seconds": seconds, "steps_per_s": done / seconds if seconds > 0 else 0.0,
                "interrupted": self._stop.name}

    def _flush_metrics(self) -> tuple[dict, bool]:
        """Average the losses since the last flush (one device sync), stop on a
        non-finite one, append a record to metrics.jsonl; (record, stop requested)."""
        values = torch.stack(self._pending)
        self._pending = []
        bad = (~torch.isfinite(values)).any(dim=1)
        stop = torch.tensor([1.0 if self._stop.requested else 0.0], device=self.device)
        packed = torch.cat([values.sum(0), bad.any().float().reshape(1), stop])
        packed = distributed.all_reduce_sum(packed, self.world)
        values_mean = packed[:3] / (len(values) * self.world.size)
        if packed[3] > 0:
            # The first bad step of this process (the interval's first step if only
            # another process saw one).
            i = int(bad.float().argmax())
            raise NonFiniteLossError(
                f"a loss became NaN or inf at step {self.step - len(values) + 1 + i} (D {values[i, 0].item():.4g}, "
                f"G {values[i, 1].item():.4g}); the run stopped. {self._last_checkpoint_text()}"
            )
        now = time.perf_counter()
        steps_done = self.step - self._interval_start[0]
        rate = steps_done / max(now - self._interval_start[1], 1e-9)
        self._interval_start = (self.step, now)
        d_loss, g_loss, r1 = (float(v) for v in values_mean.cpu())
        record = run_log.metrics_record(self.step, d_loss, g_loss, r1 if self.settings["r1"] > 0 else None, rate,
                                        images_per_step=self.settings["batch_size"] * self.settings["n_critic"])
        self.history.append(record)
        if self.run_dir is not None and self.world.is_main:
            run_log.append_metrics(self.run_dir, record)
        return record, bool(packed[4] > 0)

    def _last_checkpoint_text(self) -> str:
        if self._saved is None:
            return "No checkpoint had been written yet."
        path, step = self._saved
        return f"The last good checkpoint, {path} (step {step}), is kept."

    # ------------------------------------------------------------------ samples
    def grid_conditions(self):
        """(conditions, row labels) of the sample grid (run_log.grid_conditions: every
        class, else the first distinct users or attribute vectors; (None, None) when
        unconditional), chosen once per Trainer."""
        if self._grid is None:
            self._grid = run_log.grid_conditions(self.data, self.G, self.device)
        return self._grid

    @torch.no_grad()
    def sample_grid(self, columns: int = GRID_COLUMNS):
        """Samples [rows, columns, ...] from the EMA generator (else G) in eval mode:
        one row per grid condition, the same noise down each column."""
        model = self.ema.module if self.ema is not None else self.G
        rows, labels = self.grid_conditions()
        n_rows = 8 if rows is None else len(rows)
        gen = torch.Generator(device=self.device).manual_seed(self.settings["seed"] + 2)
        z = torch.randn(columns, self.latent_dim, generator=gen, device=self.device)
        z = z.repeat(n_rows, 1) if rows is not None else torch.randn(n_rows * columns, self.latent_dim, generator=gen, device=self.device)
        c = None if rows is None else rows.repeat_interleave(columns, dim=0)
        was_training = model.training
        model.eval()
        try:
            with self._autocast():
                out = model(z, c).float()
        finally:
            model.train(was_training)
        return out.reshape(n_rows, columns, *out.shape[1:]), labels

    def write_pictures(self) -> None:
        """samples.png (+ samples/step_N.png) and losses.png in the run directory."""
        if self.run_dir is None or not self.world.is_main:
            return
        samples, labels = self.sample_grid()
        run_log.write_pictures(self.run_dir, self.step, samples, labels, self.data, self.history)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        config = {"generator": self.G.config(), "discriminator": self.D.config(), "trainer": dict(self.settings),
                  "run": self.user_config}
        return ckpt.pack(step=self.step, d_steps=self.d_steps, config=config, generator=self.G,
                         discriminator=self.D, ema=self.ema, g_optimizer=self.g_opt, d_optimizer=self.d_opt,
                         noise=self.noise, order=self.order)

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where the checkpoint `state` left off."""
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        if self.ema is not None:
            if state.get("generator_ema") is None:
                raise ValueError("the checkpoint has no EMA generator but this Trainer keeps one (ema > 0)")
            self.ema.load_state_dict(state["generator_ema"], state["ema_updates"])
        ckpt.load_optimizer(self.g_opt, state["g_optimizer"])
        ckpt.load_optimizer(self.d_opt, state["d_optimizer"])
        self._graphs = {}  # they recorded the optimizer state tensors just replaced
        ckpt.restore_rng(state["rng"], self.noise, self.order)
        self.step, self.d_steps = int(state["step"]), int(state["d_steps"])

    def save(self, path=None) -> Path | None:
        """Write the full state atomically (process 0 only) to `path` or the run
        directory's checkpoint.pt; all processes wait for it."""
        if path is None and self.run_dir is None:
            return None
        path = Path(path) if path is not None else self.run_dir / ckpt.FILE_NAME
        if self.world.is_main:
            ckpt.save_atomic(self.state_dict(), path)
        distributed.barrier(self.world)
        self._saved = (path, self.step)
        return path

    def load(self, path) -> None:
        """Load a checkpoint (file or run directory) into this Trainer's models and state."""
        self.load_state_dict(ckpt.load(path, map_location=self.device))
        self._saved = (ckpt.resolve_path(path), self.step)

    @classmethod
    def from_checkpoint(cls, path, data, **kwargs) -> "Trainer":
        """A Trainer rebuilt from a checkpoint: the models from their configs, the
        settings it was trained with (kwargs override them), then its state."""
        from ..models import build

        state = ckpt.load(path, map_location="cpu")
        settings = dict(state["config"]["trainer"])
        settings.update(config=state["config"]["run"])
        settings.update(kwargs)
        trainer = cls(build(state["config"]["generator"]), build(state["config"]["discriminator"]), data, **settings)
        trainer.load(path)
        return trainer


def _adam_options(device: torch.device, cuda_graph: bool) -> dict:
    """Fused Adam on CUDA; capturable too under CUDA graphs (its step count stays on the
    device: the same update, without a host read)."""
    return dict(fused=True if device.type == "cuda" else None, capturable=cuda_graph)


def _check_graphable(*models: nn.Module) -> None:
    """Refuse, before training, what a captured step would get wrong: a batch norm with
    momentum=None averages with factor 1/num_batches_tracked, a Python number read from
    the device each step (a host sync) that a graph would freeze at its capture value."""
    for model, role in zip(models, ("generator", "discriminator")):
        for name, module in model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.momentum is None \
                    and module.track_running_stats:
                raise ValueError(
                    f"cuda_graph=True: {role} module {name!r} is a batch norm with momentum=None (cumulative "
                    f"average, a factor that changes every step and cannot be captured); give it a momentum"
                )
