"""From plain options (what `fastgan train` parses, or what a checkpoint stored) to the
data, the models and a Trainer. Each data source has defaults tuned for it; an option
the user sets wins over them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .. import data as fdata
from ..models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from .trainer import Trainer

BUILTIN_DATA = ("digits", "ring", "grid")

# Defaults per data source. digits: a small conditional DCGAN (conditional batch norm in
# G, projection in D) that draws every digit recognisably in about two minutes on a
# CPU. Tuned by looking at the grids: without the extra 3x3 layers D (one conv at 8x8)
# is too weak and the digits stay blurs; batch norm in D gave noisier digits; with
# concatenation instead of conditional batch norm G collapsed to one sample per class.
# Width 128 and R1 (gamma 1, lazy every 16 D steps) for recall: width 64 drew typical
# digits only (recall .72); translation/cutout augmentation, a minibatch-std feature and
# PacGAN packing did not help at this size (docs/quality.md, Digits). Adam betas
# (0, 0.99) as in StyleGAN2/R1 training: without beta1's momentum G drew fewer
# over-typical digits (recall .794 -> .820, seed 0).
# toy (ring, grid): lr 3e-4 with the EMA of G; at 1e-4 the grid's outer modes were still
# spread wider than their sigma after 3,000 steps (89 % high quality; 2e-4: 94.6 %, 3e-4:
# 95.2 %, seed 0; the ring stays at 99.9 %), see docs/quality.md.
COMMON = dict(
    cond="auto", loss="hinge", batch_size=64, g_lr=2e-4, d_lr=2e-4, beta1=0.5, beta2=0.999, n_critic=1,
    r1=0.0, r1_interval=16, ema=0.999, amp="auto", accumulate=1, seed=0, device="auto", threads=None,
    checkpoint_every=500, sample_every=250, log_every=10, g_cond="cbn", g_norm="batch", d_norm="batch",
    extra_layers=0, channels=3, attributes=None, columns=None, cuda_graph=False, augment="", d_mbstd=0, d_pack=1,
)
PRESETS = {
    "digits": dict(COMMON, size=8, width=128, latent=32, steps=3000, extra_layers=1, d_norm="none", r1=1.0,
                   beta1=0.0, beta2=0.99),
    "toy": dict(COMMON, width=256, latent=16, steps=3000, batch_size=256, g_lr=3e-4, d_lr=3e-4, g_cond="concat",
                g_norm="none", d_norm="none", loss="nonsaturating", sample_every=500),
    "folder": dict(COMMON, size=64, width=64, latent=100, steps=20000),
}


def data_kind(name: str) -> str:
    if name == "digits":
        return "digits"
    if name in ("ring", "grid"):
        return "toy"
    return "folder"


def resolve(options: dict) -> dict:
    """options with every unset (None) value filled from the data source's preset."""
    kind = data_kind(options.get("data") or "digits")
    if kind != "folder":
        for name in ("attributes", "columns", "channels"):
            if options.get(name) is not None:
                raise ValueError(f"argument --{name}: applies to an image folder, not to --data {options.get('data') or 'digits'}")
    if kind == "toy":
        for name in ("size", "extra_layers", "augment", "d_mbstd", "d_pack"):
            if options.get(name) is not None:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"argument {flag}: applies to images, not to the 2-D points of --data {options['data']}")
    merged = dict(PRESETS[kind])
    merged.update({k: v for k, v in options.items() if v is not None})
    merged.setdefault("data", "digits")
    merged["data_kind"] = kind
    return merged


def load_data(opts: dict):
    """The data set the options name, read and checked (errors name the option)."""
    kind = opts["data_kind"]
    if opts["columns"] is not None and opts["attributes"] is None:
        raise ValueError("argument --columns: needs --attributes (a CSV of per-image attributes)")
    if kind == "digits":
        if opts["size"] != 8:
            raise ValueError(f"argument --size: the digits are 8x8 images, so --size must be 8, got {opts['size']}")
        data = fdata.digits()
    elif kind == "toy":
        data = fdata.mixture(opts["data"], seed=opts["seed"])
    else:
        data = fdata.image_folder(
            opts["data"], opts["size"], channels=opts["channels"], attributes=opts["attributes"], columns=opts["columns"]
        )
    return data.with_condition(opts["cond"])


def build_models(opts: dict, data):
    """(generator, discriminator) for the data, from the options."""
    cond = dict(cond_kind=data.cond_kind, cond_size=data.cond_size)
    if data.is_image:
        pack = opts.get("d_pack", 1)
        if opts["batch_size"] % pack:
            raise ValueError(f"argument --d-pack: the batch size {opts['batch_size']} must be a multiple of the pack "
                             f"size {pack}")
        channels, size = data.sample_shape[0], data.sample_shape[-1]
        common = dict(size=size, channels=channels, width=opts["width"], extra_layers=opts["extra_layers"], **cond)
        g = DCGANGenerator(latent_dim=opts["latent"], norm=opts["g_norm"], cond_mode=opts["g_cond"], **common)
        d = DCGANDiscriminator(norm=opts["d_norm"], mbstd_group=opts.get("d_mbstd", 0), pack=opts.get("d_pack", 1),
                               **common)
    else:
        features = data.sample_shape[0]
        hidden = (opts["width"],) * 3
        g = MLPGenerator(features, opts["latent"], hidden, norm=opts["g_norm"], cond_mode=opts["g_cond"], **cond)
        d = MLPDiscriminator(features, hidden, **cond)
    return g, d


def trainer_settings(opts: dict) -> dict:
    device = None if opts["device"] == "auto" else opts["device"]
    amp = {"auto": "auto", "on": True, "off": False}[opts["amp"]]
    return dict(
        loss=opts["loss"], batch_size=opts["batch_size"], g_lr=opts["g_lr"], d_lr=opts["d_lr"],
        betas=(opts["beta1"], opts["beta2"]), n_critic=opts["n_critic"], r1=opts["r1"], r1_interval=opts["r1_interval"],
        ema=opts["ema"], amp=amp, accumulate=opts["accumulate"], checkpoint_every=opts["checkpoint_every"],
        sample_every=opts["sample_every"], log_every=opts["log_every"], seed=opts["seed"], device=device,
        cuda_graph=opts.get("cuda_graph", False), augment=opts.get("augment", ""),
    )


def check_cuda_graph(opts: dict) -> None:
    """--cuda-graph needs CUDA and a single process: refused before any data is read."""
    if not opts.get("cuda_graph", False):
        return
    device = opts["device"]
    if device == "cpu" or not torch.cuda.is_available():
        where = "--device cpu" if device == "cpu" else "this machine has no CUDA device"
        raise ValueError(f"argument --cuda-graph: CUDA graphs need a CUDA device ({where}); leave out --cuda-graph "
                         f"(or give --no-cuda-graph when resuming)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("argument --cuda-graph: not supported under torchrun (DDP's all-reduce is not captured)")


def make_trainer(opts: dict, run_dir: Path, *, progress: bool = True) -> Trainer:
    """Data, models and Trainer for a new run (models initialised from the seed)."""
    if opts["device"] != "auto" and opts["device"].startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"argument --device: {opts['device']!r} was asked for but CUDA is not available")
    check_cuda_graph(opts)
    data = load_data(opts)
    torch.manual_seed(opts["seed"])
    generator, discriminator = build_models(opts, data)
    run = {"options": opts, "cond_names": data.cond_names, "data_name": data.name}
    return Trainer(generator, discriminator, data, run_dir=run_dir, progress=progress, config=run, **trainer_settings(opts))


def resume_trainer(state: dict, path, run_dir: Path, overrides: dict, *, progress: bool = True) -> Trainer:
    """The Trainer of a stored run, its data read again from the stored options."""
    opts = dict(state["config"]["run"]["options"])
    opts.update(overrides)
    check_cuda_graph(opts)
    data = load_data(opts)
    # What a resumed run may change (the CLI refuses the rest); steps and threads are
    # the caller's business.
    settings = {k: v for k, v in overrides.items() if k in ("device", "checkpoint_every", "sample_every", "log_every")}
    if "device" in settings:
        settings["device"] = None if settings["device"] == "auto" else settings["device"]
    settings["cuda_graph"] = opts.get("cuda_graph", False)  # the run's choice unless overridden
    run = dict(state["config"]["run"], options=opts)
    return Trainer.from_checkpoint(path, data, run_dir=run_dir, progress=progress, config=run, **settings)
