"""Checkpoints: plain data (tensors, numbers, strings, lists, dicts), written atomically
and read back with torch.load(weights_only=True), so loading one never runs code.

Layout (format 'fastgan-checkpoint', version 1):
    step, d_steps              training iterations done, discriminator updates done
    config                     {'generator': G.config(), 'discriminator': D.config(),
                                'trainer': the Trainer's settings, 'run': caller's data}
    generator, discriminator   state_dicts
    generator_ema, ema_updates the EMA generator's state_dict (None without EMA)
    g_optimizer, d_optimizer   optimizer state_dicts
    rng                        {'torch', 'cuda', 'noise': generator states, 'order': data order}
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

FORMAT = "fastgan-checkpoint"
VERSION = 1
FILE_NAME = "checkpoint.pt"


def save_atomic(state: dict, path) -> None:
    """Write `state` to `path` so that `path` is always either the old file or the new
    one, never a partial write: a temporary file beside it, fsync, then os.replace."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def resolve_path(path) -> Path:
    """A checkpoint file, or a run directory holding checkpoint.pt."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    return path


def load(path, map_location="cpu") -> dict:
    """The checkpoint at `path` (a file or a run directory), checked to be fastgan's."""
    path = resolve_path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a torn or foreign file: say which, not a pickle traceback
        raise ValueError(f"{str(path)!r} is not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a fastgan checkpoint")
    if state.get("version") != VERSION:
        raise ValueError(f"{str(path)!r} has checkpoint version {state.get('version')}, this fastgan reads version {VERSION}")
    return state


def load_generator(path, *, ema: bool = True, device="cpu"):
    """(generator in eval mode, checkpoint) from a checkpoint: the EMA generator when the
    run kept one and ema is True, else the trained one."""
    from ..models import build

    state = load(path, map_location=device)
    generator = build(state["config"]["generator"])
    weights = state["generator_ema"] if ema and state.get("generator_ema") is not None else state["generator"]
    generator.load_state_dict(weights)
    return generator.to(device).eval(), state


def pack(*, step: int, d_steps: int, config: dict, generator, discriminator, ema, g_optimizer, d_optimizer,
         noise: torch.Generator, order) -> dict:
    """A Trainer's state in the layout above. ema: the EMA or None; noise: the generator
    of the training noise; order: the data order (its state_dict())."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "d_steps": d_steps,
        "config": config,
        "generator": generator.state_dict(),
        "discriminator": discriminator.state_dict(),
        "generator_ema": ema.state_dict() if ema is not None else None,
        "ema_updates": ema.updates if ema is not None else 0,
        "g_optimizer": g_optimizer.state_dict(),
        "d_optimizer": d_optimizer.state_dict(),
        "rng": rng_state(noise, order),
    }


def rng_state(noise: torch.Generator, order) -> dict:
    """Every random stream a run draws from: torch's, CUDA's, the noise's, the data order's."""
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda_states, "noise": noise.get_state(),
            "order": order.state_dict()}


def restore_rng(rng: dict, noise: torch.Generator, order) -> None:
    # Generator states are CPU byte tensors whatever the generator's device; a checkpoint
    # loaded with map_location="cuda" has moved them (seen on an H200: "RNG state must be
    # a torch.ByteTensor").
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
    noise.set_state(rng["noise"].cpu())
    order.load_state_dict(rng["order"])


def load_optimizer(opt: torch.optim.Optimizer, saved: dict) -> None:
    """Load an optimizer's state; how its update runs (fused, foreach, capturable) stays
    this optimizer's choice, not that of the run that wrote the checkpoint (a run may
    resume with or without CUDA graphs, or on another device)."""
    how = ("fused", "foreach", "capturable")
    groups = [dict(saved_group, **{k: group[k] for k in how if k in group})
              for saved_group, group in zip(saved["param_groups"], opt.param_groups)]
    opt.load_state_dict(dict(saved, param_groups=groups + saved["param_groups"][len(groups):]))
