"""`fastgan train`: options, resuming a run, and the messages and exit status of a training run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .arguments import (
    EXIT_FAILED, UsageError, device_spec, image_size, nonneg_float, nonneg_int, positive_int, set_threads, unit_float,
)


def _columns(text):
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise argparse.ArgumentTypeError("must name at least one column, e.g. --columns smiling,young")
    return names


def _augment_policy(text):
    from ..train.augment import parse_policy

    if text.strip() == "none":
        return ""
    try:
        return ",".join(parse_policy(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_train(subparsers) -> None:
    from ..models import COND_KINDS
    from ..reference.loss import KINDS
    from ..train.recipes import BUILTIN_DATA

    p = subparsers.add_parser(
        "train", help="train a (conditional) GAN and write a run directory",
        description="Train a GAN. With no arguments: a conditional DCGAN on scikit-learn's 8x8 digits, about four "
        "minutes on a CPU. Unset options take the defaults of the data source.",
    )
    p.set_defaults(handler=run_train)
    # Every default is None here: the data source's preset fills it in (train/recipes.py),
    # and --resume can tell which options were given.
    g = p.add_argument_group("data")
    g.add_argument("--data", help=f"{', '.join(BUILTIN_DATA)} or a folder of images (default: digits)")
    g.add_argument("--attributes", metavar="CSV", help="per-image attributes for an image folder: file name, then number columns")
    g.add_argument("--columns", type=_columns, help="attribute columns to use, comma-separated (default: all)")
    g.add_argument("--channels", type=int, choices=(1, 3), help="image folder: 1 (grayscale) or 3 (RGB, default)")
    g.add_argument("--cond", choices=("auto",) + COND_KINDS,
                   help="condition: auto (the data's own), none, label, attributes or user")
    g = p.add_argument_group("model")
    g.add_argument("--size", type=image_size, help="image size: 8..256, a power of two (digits: 8; folders: 64)")
    g.add_argument("--width", type=positive_int, help="model width (channels of the widest-resolution layer / MLP hidden size)")
    g.add_argument("--latent", type=positive_int, help="noise dimension")
    g.add_argument("--g-cond", choices=("cbn", "concat"), help="generator conditioning: conditional batch norm or concatenation to z")
    g.add_argument("--g-norm", choices=("batch", "none"), help="generator normalisation")
    g.add_argument("--d-norm", choices=("batch", "none"), help="discriminator normalisation")
    g.add_argument("--extra-layers", type=nonneg_int, help="extra 3x3 conv layers in G and D")
    g.add_argument("--d-mbstd", type=nonneg_int,
                   help="minibatch standard deviation feature in D over groups of N samples (0: off; images)")
    g.add_argument("--d-pack", type=positive_int,
                   help="PacGAN: D judges packs of N samples stacked along channels (1: off; images; the batch "
                   "size must be a multiple of N)")
    g = p.add_argument_group("training")
    g.add_argument("--loss", choices=KINDS, help="adversarial loss (default: hinge for images)")
    g.add_argument("--steps", type=positive_int, help="total training steps (one step: n_critic D updates + one G update)")
    g.add_argument("--batch-size", type=positive_int, help="global batch size (split over processes under torchrun)")
    g.add_argument("--lr", type=nonneg_float, help="learning rate of both G and D")
    g.add_argument("--g-lr", type=nonneg_float, help="generator learning rate")
    g.add_argument("--d-lr", type=nonneg_float, help="discriminator learning rate")
    g.add_argument("--beta1", type=unit_float, help="Adam beta1 (digits: 0; otherwise 0.5)")
    g.add_argument("--beta2", type=unit_float, help="Adam beta2 (digits: 0.99; otherwise 0.999)")
    g.add_argument("--n-critic", type=positive_int, help="D updates per G update")
    g.add_argument("--r1", type=nonneg_float, help="R1 penalty weight gamma (0: off)")
    g.add_argument("--r1-interval", type=positive_int, help="apply R1 every N D updates (lazy regularisation)")
    g.add_argument("--ema", type=unit_float, help="EMA decay of the generator's weights (0: off)")
    g.add_argument("--augment", type=_augment_policy,
                   help="DiffAugment policies applied to every image D sees: translation, cutout, color, "
                   "comma-separated ('none': off; images)")
    g.add_argument("--amp", choices=("auto", "on", "off"), help="bf16 autocast (auto: on CUDA)")
    g.add_argument("--accumulate", type=positive_int, help="micro-batches per step (gradient accumulation)")
    g.add_argument("--seed", type=nonneg_int, help="random seed")
    g.add_argument("--device", type=device_spec, help="auto, cpu, cuda or cuda:N")
    g.add_argument("--threads", type=positive_int,
                   help="CPU threads for PyTorch (default 1 on CPU: the default models are too small to gain from more)")
    g.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction,
                   help="capture each training step in a CUDA graph and replay it (CUDA only, not under torchrun; "
                   "same results as without). A resumed run keeps its choice unless given --no-cuda-graph")
    g = p.add_argument_group("output")
    g.add_argument("--out", help="run directory (default: runs/<data>, numbered if it exists)")
    g.add_argument("--resume", metavar="RUN", help="continue a run (its directory or checkpoint) with its stored options")
    g.add_argument("--checkpoint-every", type=positive_int, help="steps between checkpoints")
    g.add_argument("--sample-every", type=positive_int, help="steps between sample grids")
    g.add_argument("--log-every", type=positive_int, help="steps between metrics records")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


# Options that may differ when a run is resumed (everything else is the run's own).
RESUMABLE = {"steps", "device", "threads", "checkpoint_every", "sample_every", "log_every", "cuda_graph"}


def given_options(args) -> dict:
    skip = {"command", "handler", "resume", "out", "no_progress", "lr"}
    opts = {k: v for k, v in vars(args).items() if k not in skip}
    if args.lr is not None:
        for key in ("g_lr", "d_lr"):
            if opts[key] is None:
                opts[key] = args.lr
    return {k: v for k, v in opts.items() if v is not None}


def _new_run_dir(data: str) -> Path:
    base = Path("runs") / (Path(data).name or "run")
    candidate, n = base, 1
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate


def run_train(args) -> int:
    from ..train import NonFiniteLossError
    from ..train import checkpoint as ckpt
    from ..train.recipes import resolve, resume_trainer, make_trainer

    given = given_options(args)
    progress = not args.no_progress
    try:
        if args.resume:
            changed = sorted(set(given) - RESUMABLE)
            if changed:
                raise UsageError(
                    f"fastgan train: error: --resume continues a run with its own options; only "
                    f"{', '.join('--' + o.replace('_', '-') for o in sorted(RESUMABLE))} may be given, not "
                    f"{', '.join('--' + o.replace('_', '-') for o in changed)}"
                )
            path = ckpt.resolve_path(args.resume)
            state = ckpt.load(path)
            run_dir = Path(args.out) if args.out else path.parent
            set_threads(dict(state["config"]["run"]["options"], **given))
            trainer = resume_trainer(state, path, run_dir, given, progress=progress)
            steps = given.get("steps", state["config"]["run"]["options"]["steps"])
        else:
            opts = resolve(given)
            run_dir = Path(args.out) if args.out else _new_run_dir(opts["data"])
            if (run_dir / ckpt.FILE_NAME).exists():
                raise UsageError(
                    f"fastgan train: error: argument --out: {str(run_dir)!r} already holds a run; continue it with "
                    f"--resume {run_dir}, or choose another --out"
                )
            set_threads(opts)
            trainer = make_trainer(opts, run_dir, progress=progress)
            steps = opts["steps"]
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise UsageError(f"fastgan train: error: {error}") from None

    if trainer.world.is_main:
        print(f"fastgan: training to step {steps} on {trainer.device}, writing {run_dir}", file=sys.stderr)
    try:
        result = trainer.fit(steps)
    except NonFiniteLossError as error:
        print(f"fastgan train: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    if result["interrupted"]:
        if trainer.world.is_main:
            print(
                f"fastgan: stopped by {result['interrupted']} at step {result['step']}; checkpoint saved in {run_dir}. "
                f"Continue with: fastgan train --resume {run_dir}",
                file=sys.stderr,
            )
        import signal

        return 128 + int(getattr(signal, result["interrupted"]))
    if trainer.world.is_main:
        print(
            f"fastgan: step {result['step']} in {result['seconds']:.1f} s ({result['steps_per_s']:.1f} steps/s); "
            f"wrote {run_dir}/samples.png, losses.png, metrics.jsonl, checkpoint.pt"
        )
    return 0
