"""The `fastgan` command.

    fastgan train                     a conditional GAN on the 8x8 digits (about two minutes on a CPU)
    fastgan train --data DIR ...      your images (optionally with a CSV of attributes)
    fastgan sample --ckpt RUN --cond 3 --n 16 --out threes.png
    fastgan bench                     a DCGAN training step: eager, torch.compile and fastgan side by side
    fastgan bench --host              host overhead per step (launches stubbed) and launches per step

Each subcommand is one `add_<name>` function that registers its parser and handler in
COMMANDS; a new subcommand is one more such function. Bad input gives a one-line
error on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

EXIT_USAGE = 2
EXIT_FAILED = 1


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; one line is enough
        raise UsageError(f"{self.prog}: error: {message}")


# ---------------------------------------------------------------------- value checks
def _int_at_least(low: int, expected: str):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "an integer >= 0")


def _nonneg_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _unit_float(text):
    value = _nonneg_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def _image_size(text):
    value = _positive_int(text)
    if value not in (8, 16, 32, 64, 128, 256):
        raise argparse.ArgumentTypeError(f"must be a power of two from 8 to 256, got {text!r}")
    return value


def _device(text):
    import torch

    try:
        device = torch.device(text) if text != "auto" else None
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}") from None
    if device is not None and device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def _columns(text):
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise argparse.ArgumentTypeError("must name at least one column, e.g. --columns smiling,young")
    return names


# ---------------------------------------------------------------------- train
def add_train(subparsers) -> None:
    from .models import COND_KINDS
    from .reference.loss import KINDS
    from .train.recipes import BUILTIN_DATA

    p = subparsers.add_parser(
        "train", help="train a (conditional) GAN and write a run directory",
        description="Train a GAN. With no arguments: a conditional DCGAN on scikit-learn's 8x8 digits, about two "
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
    g.add_argument("--size", type=_image_size, help="image size: 8..256, a power of two (digits: 8; folders: 64)")
    g.add_argument("--width", type=_positive_int, help="model width (channels of the widest-resolution layer / MLP hidden size)")
    g.add_argument("--latent", type=_positive_int, help="noise dimension")
    g.add_argument("--g-cond", choices=("cbn", "concat"), help="generator conditioning: conditional batch norm or concatenation to z")
    g.add_argument("--g-norm", choices=("batch", "none"), help="generator normalisation")
    g.add_argument("--d-norm", choices=("batch", "none"), help="discriminator normalisation")
    g.add_argument("--extra-layers", type=_nonneg_int, help="extra 3x3 conv layers in G and D")
    g = p.add_argument_group("training")
    g.add_argument("--loss", choices=KINDS, help="adversarial loss (default: hinge for images)")
    g.add_argument("--steps", type=_positive_int, help="total training steps (one step: n_critic D updates + one G update)")
    g.add_argument("--batch-size", type=_positive_int, help="global batch size (split over processes under torchrun)")
    g.add_argument("--lr", type=_nonneg_float, help="learning rate of both G and D")
    g.add_argument("--g-lr", type=_nonneg_float, help="generator learning rate")
    g.add_argument("--d-lr", type=_nonneg_float, help="discriminator learning rate")
    g.add_argument("--beta1", type=_unit_float, help="Adam beta1 (default 0.5)")
    g.add_argument("--beta2", type=_unit_float, help="Adam beta2 (default 0.999)")
    g.add_argument("--n-critic", type=_positive_int, help="D updates per G update")
    g.add_argument("--r1", type=_nonneg_float, help="R1 penalty weight gamma (0: off)")
    g.add_argument("--r1-interval", type=_positive_int, help="apply R1 every N D updates (lazy regularisation)")
    g.add_argument("--ema", type=_unit_float, help="EMA decay of the generator's weights (0: off)")
    g.add_argument("--amp", choices=("auto", "on", "off"), help="bf16 autocast (auto: on CUDA)")
    g.add_argument("--accumulate", type=_positive_int, help="micro-batches per step (gradient accumulation)")
    g.add_argument("--seed", type=_nonneg_int, help="random seed")
    g.add_argument("--device", type=_device, help="auto, cpu, cuda or cuda:N")
    g.add_argument("--threads", type=_positive_int,
                   help="CPU threads for PyTorch (default 1 on CPU: the default models are too small to gain from more)")
    g.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction,
                   help="capture each training step in a CUDA graph and replay it (CUDA only, not under torchrun; "
                   "same results as without). A resumed run keeps its choice unless given --no-cuda-graph")
    g = p.add_argument_group("output")
    g.add_argument("--out", help="run directory (default: runs/<data>, numbered if it exists)")
    g.add_argument("--resume", metavar="RUN", help="continue a run (its directory or checkpoint) with its stored options")
    g.add_argument("--checkpoint-every", type=_positive_int, help="steps between checkpoints")
    g.add_argument("--sample-every", type=_positive_int, help="steps between sample grids")
    g.add_argument("--log-every", type=_positive_int, help="steps between metrics records")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


# Options that may differ when a run is resumed (everything else is the run's own).
RESUMABLE = {"steps", "device", "threads", "checkpoint_every", "sample_every", "log_every", "cuda_graph"}


def _given_options(args) -> dict:
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


def _set_threads(opts: dict) -> None:
    import torch

    threads = opts.get("threads")
    device = opts.get("device", "auto")
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if threads is None and on_cpu:
        # Measured on two shared cores: 25 ms/step with one thread, 250 ms with two
        # while another process kept one core busy (OpenMP threads wait for each other).
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)


def run_train(args) -> int:
    from .train import NonFiniteLossError
    from .train import checkpoint as ckpt
    from .train.recipes import resolve, resume_trainer, make_trainer

    given = _given_options(args)
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
            _set_threads(dict(state["config"]["run"]["options"], **given))
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
            _set_threads(opts)
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


# ---------------------------------------------------------------------- sample
def add_sample(subparsers) -> None:
    p = subparsers.add_parser(
        "sample", help="generate samples for a condition from a checkpoint",
        description="Generate samples from a trained generator (its EMA weights when the run kept them).",
    )
    p.set_defaults(handler=run_sample)
    p.add_argument("--ckpt", required=True, help="a checkpoint file or a run directory")
    p.add_argument("--cond", help="a class label (number or name), a user id, or attributes: "
                   "comma-separated numbers or name=value pairs (unnamed attributes are 0)")
    p.add_argument("--n", type=_positive_int, default=16, help="number of samples (default 16)")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--no-ema", action="store_true", help="use the trained generator, not its moving average")
    p.add_argument("--device", type=_device, default="cpu", help="cpu (default), cuda or cuda:N")


def parse_condition(text: str | None, kind: str, size: int, names: list[str] | None):
    """The condition tensor [1] or [1, size] that --cond describes, checked against the model."""
    import torch

    if kind == "none":
        if text is not None:
            raise UsageError("fastgan sample: error: argument --cond: this model is unconditional; leave --cond out")
        return None
    if text is None:
        raise UsageError(f"fastgan sample: error: argument --cond: this model is conditioned on a {kind} ({size} "
                         f"{'classes' if kind == 'label' else 'users' if kind == 'user' else 'attributes'}); give --cond")
    bad = f"fastgan sample: error: argument --cond: {text!r}"
    if kind in ("label", "user"):
        if kind == "label" and names and text in names:
            return torch.tensor([names.index(text)])
        try:
            value = int(text)
        except ValueError:
            known = f" or one of {names}" if names and kind == "label" else ""
            raise UsageError(f"{bad} is not a {kind} id (an integer in [0, {size}){known})") from None
        if not 0 <= value < size:
            raise UsageError(f"{bad} is out of range: the model knows {kind} ids 0..{size - 1}")
        return torch.tensor([value])
    parts = [p.strip() for p in text.split(",") if p.strip()]
    values = [0.0] * size
    if parts and all("=" in p for p in parts):
        for part in parts:
            name, _, raw = part.partition("=")
            if not names or name.strip() not in names:
                raise UsageError(f"{bad}: unknown attribute {name.strip()!r}; the model's attributes are {names}")
            values[names.index(name.strip())] = _float_or_usage(raw, bad)
    else:
        if len(parts) != size:
            named = f" ({', '.join(names)})" if names else ""
            raise UsageError(f"{bad} has {len(parts)} value(s); the model takes {size} attributes{named}")
        values = [_float_or_usage(p, bad) for p in parts]
    return torch.tensor([values])


def _float_or_usage(text, bad):
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{bad}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{bad}: {text.strip()!r} is not finite")
    return value


def run_sample(args) -> int:
    import torch

    from .train import checkpoint as ckpt
    from .train import plots

    if not args.out.lower().endswith(".png"):
        raise UsageError(f"fastgan sample: error: argument --out: must be a .png file, got {args.out!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"fastgan sample: error: argument --device: {args.device!r} but CUDA is not available")
    try:
        generator, state = ckpt.load_generator(args.ckpt, ema=not args.no_ema, device=args.device)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"fastgan sample: error: argument --ckpt: {error}") from None
    names = state["config"]["run"].get("cond_names")
    c = parse_condition(args.cond, generator.cond_kind, generator.cond_size, names)
    gen = torch.Generator().manual_seed(args.seed)
    z = torch.randn(args.n, generator.latent_dim, generator=gen).to(args.device)
    if c is not None:
        c = c.expand(args.n, *c.shape[1:]).to(args.device)
    with torch.no_grad():
        samples = generator(z, c).float().cpu()
    label = [args.cond] if args.cond is not None else None
    if samples.dim() == 4:
        columns = math.ceil(math.sqrt(args.n))
        rows = math.ceil(args.n / columns)
        pad = rows * columns - args.n  # blank (white) cells fill the last row
        filled = torch.cat([samples, torch.ones(pad, *samples.shape[1:])]) if pad else samples
        plots.image_grid(filled.reshape(rows, columns, *samples.shape[1:]), args.out)
    else:
        plots.vector_plot(samples[None], args.out, row_labels=label)
    print(f"fastgan: wrote {args.n} sample(s) to {args.out}")
    return 0


# ---------------------------------------------------------------------- eval
def add_eval(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="score a checkpoint's samples offline (or: eval recsys)",
        usage="fastgan eval --ckpt RUN [--seeds N] [--json PATH] [--no-ema] [--device DEVICE] [--threads N]\n"
              "       fastgan eval recsys [-h] [options]",
        description="Score a trained generator's samples per condition with the metric for its data: digits and "
        "labelled images against a classifier trained on the real images (conditional accuracy, Frechet distance, "
        "precision/recall, density/coverage); ring and grid by mode coverage (2,500 samples, the VEEGAN/PacGAN "
        "protocol). Mean ± std over seeds. `fastgan eval recsys -h`: the recommendation benchmark.",
    )
    p.set_defaults(handler=run_eval)
    p.add_argument("--ckpt", help="a checkpoint file or a run directory written by `fastgan train`")
    p.add_argument("--seeds", type=_positive_int, help="score this many noise seeds, 0..N-1 (default 3)")
    p.add_argument("--json", metavar="PATH", help="also write the scores as JSON")
    p.add_argument("--no-ema", action="store_true", help="score the trained generator, not its moving average")
    p.add_argument("--device", type=_device, default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--threads", type=_positive_int, help="CPU threads for PyTorch (default 1 on CPU)")
    from .recsys import command as recsys_command

    targets = p.add_subparsers(dest="eval_target", metavar="recsys", prog="fastgan eval", parser_class=_Parser)
    recsys = targets.add_parser("recsys", help="CFGAN against TopPop and EASE on MovieLens-100K or your interactions",
                                description=recsys_command.DESCRIPTION)
    recsys_command.add_arguments(recsys)


def run_eval(args) -> int:
    import json

    import torch

    from ._provenance import provenance
    from .recsys import command as recsys_command
    from .train import checkpoint as ckpt
    from .train import evaluation

    if args.eval_target == "recsys":
        if args.ckpt is not None:
            raise UsageError("fastgan eval recsys: error: argument --ckpt: scores a checkpoint; leave it out for recsys")
        return recsys_command.run(args)
    if args.ckpt is None:
        raise UsageError("fastgan eval: error: give --ckpt (a checkpoint or run directory), or `fastgan eval recsys`")
    args.seeds = 3 if args.seeds is None else args.seeds
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"fastgan eval: error: argument --device: {args.device!r} but CUDA is not available")
    _set_threads({"threads": args.threads, "device": args.device})
    try:
        ckpt.resolve_path(args.ckpt)
    except FileNotFoundError as error:
        raise UsageError(f"fastgan eval: error: argument --ckpt: {error}") from None
    try:
        report = evaluation.evaluate_checkpoint(args.ckpt, seeds=range(args.seeds), ema=not args.no_ema,
                                                device=args.device)
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise UsageError(f"fastgan eval: error: {error}") from None
    count = f"{report['samples']} samples" + (f" against {report['reference']} real" if report["reference"] else "")
    print(f"{report['checkpoint']}: step {report['step']}, data {report['data']}, {report['generator']} generator; "
          f"{args.seeds} seed(s) x {count}; mean ± std over seeds\ntrained with: {report['train_command']}")
    print(evaluation.format_report(report))
    if args.json:
        record = {"command": _eval_command(args), **provenance(), **evaluation.as_json(report)}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
        print(f"wrote {args.json}")
    return 0


def _eval_command(args) -> str:
    """The command line that reproduces these scores (recorded in the JSON)."""
    words = ["fastgan", "eval", "--ckpt", args.ckpt, "--seeds", str(args.seeds)]
    if args.no_ema:
        words.append("--no-ema")
    if args.device != "cpu":
        words += ["--device", args.device]
    return " ".join(words)


# ---------------------------------------------------------------------- export
def add_export(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a generator as an AOTInductor package (.pt2) for the C++ sampler",
        description="Export the generator of a checkpoint (its EMA weights when the run kept them) with "
        "torch.export and package it with AOTInductor for one device, batch size dynamic. native/ builds "
        "fastgan-sample, which runs the package from C++ without Python.",
    )
    p.set_defaults(handler=run_export)
    p.add_argument("--ckpt", required=True, help="a checkpoint file or a run directory")
    p.add_argument("--out", required=True, help="the package to write (.pt2)")
    p.add_argument("--no-ema", action="store_true", help="export the trained generator, not its moving average")
    p.add_argument("--device", type=_device, default="auto",
                   help="the device the package runs on: auto (CUDA when available, default), cpu, cuda or cuda:N")


def run_export(args) -> int:
    import os

    import torch

    from .export import ExportError, export_generator
    from .train import checkpoint as ckpt

    bad_out = f"fastgan export: error: argument --out: {args.out!r}"
    out = Path(args.out)
    if out.suffix != ".pt2":
        raise UsageError(f"{bad_out} must be a .pt2 file")
    if out.is_dir():
        raise UsageError(f"{bad_out} is a directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{bad_out}: cannot create its folder ({error.strerror})") from None
    if not os.access(out.parent, os.W_OK):
        raise UsageError(f"{bad_out}: its folder is not writable")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"fastgan export: error: argument --device: {device!r} but CUDA is not available")
    try:
        generator, state = ckpt.load_generator(args.ckpt, ema=not args.no_ema, device=device)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"fastgan export: error: argument --ckpt: {error}") from None
    except (KeyError, RuntimeError) as error:  # a fastgan checkpoint whose parts do not fit together
        first = str(error).strip().splitlines()[0]
        raise UsageError(f"fastgan export: error: argument --ckpt: its generator cannot be rebuilt ({first})") from None
    print(f"fastgan: exporting {type(generator).__name__} for {device} (AOTInductor compiles C++; this takes a minute)",
          file=sys.stderr)
    try:
        difference = export_generator(generator, out, device=device,
                                      cond_names=state["config"]["run"].get("cond_names"))
    except ExportError as error:
        print(f"fastgan export: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"fastgan: wrote {out} for {device} (max |package - generator| on a check batch: {difference:.2g})")
    return 0


# ---------------------------------------------------------------------- bench
def _providers(text):
    from .bench.dcgan import PROVIDERS

    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROVIDERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"must be a comma-separated subset of {','.join(PROVIDERS)}, got {text!r}")
    return list(dict.fromkeys(names))


def add_bench(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="time a DCGAN training step: eager PyTorch, torch.compile and fastgan side by side",
        description="Time one DCGAN training step (D on real and fake, G through D, both Adam updates) for each "
        "provider on this device and print images/s, ms/step, ratios to eager and compile, model FLOP utilisation "
        "(against the dense matmul rate measured in the same run: bf16 on a GPU, float32 on a CPU) and peak memory "
        "(GPU only). Unset sizes default to DCGAN-64 at batch 256 in bf16 on a GPU, and to a small model on a CPU.",
    )
    p.set_defaults(handler=run_bench)
    p.add_argument("--device", type=_device, default="auto", help="auto (CUDA when available, default), cpu, cuda or cuda:N")
    p.add_argument("--batch", type=_positive_int, help="images per step (default: 256 on a GPU, 8 on a CPU)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "bf16", "fp32"),
                   help="float32, or bfloat16 (autocast, parameters in float32); default bfloat16 on a GPU, float32 on a CPU")
    p.add_argument("--image-size", type=_image_size, help="image side, a power of two 8..256 (default 64 on a GPU, 32 on a CPU)")
    p.add_argument("--width", type=_positive_int, help="channels of the widest-resolution layer (default 64 on a GPU, 16 on a CPU)")
    p.add_argument("--latent", type=_positive_int, default=100, help="noise dimension (default 100)")
    p.add_argument("--cond", choices=("none", "class"), default="none",
                   help="none (default) or class: a 10-class conditional model (embedding concatenated to z in G, "
                   "projection in D)")
    p.add_argument("--providers", type=_providers, default=None, help="comma-separated: eager,compile,fastgan (default: all)")
    p.add_argument("--steps", type=_positive_int, help="timed steps per provider (default: 20 on a GPU, 5 on a CPU)")
    p.add_argument("--warmup", type=_positive_int, help="untimed warm-up steps per provider, >= 1 (compiles happen "
                   "there; default: 5 on a GPU, 2 on a CPU)")
    p.add_argument("--threads", type=_positive_int, help="CPU threads for PyTorch (default 1 on a CPU)")
    p.add_argument("--json", metavar="PATH", help="also write the result (table, environment, samples) as JSON")
    p.add_argument("--host", action="store_true",
                   help="instead: the host overhead of the DCGAN-64 step on this CPU, eager against fastgan with every "
                   "Triton launch stubbed out (width 1, batch 2, float32; launch configs as on an H100), and the "
                   "Triton launches of a real-size step (batch 256, bf16). Uses --steps (repeats, default 20) and "
                   "--json; times one thread's CPU time; sets TRITON_INTERPRET=1")


def _run_host_bench(args) -> int:
    import os

    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET", "0") != "1":
        raise UsageError("fastgan bench: error: argument --host: needs TRITON_INTERPRET=1 set before triton is "
                         "imported: run `TRITON_INTERPRET=1 fastgan bench --host`")
    os.environ["TRITON_INTERPRET"] = "1"  # backend 'triton' on CPU tensors (nothing is computed)
    from .bench import host, measure

    print("fastgan bench: timing the host work of a DCGAN-64 step, eager and fastgan interleaved", file=sys.stderr,
          flush=True)
    record = host.run(repeats=args.steps or 20)
    print(host.format_report(record))
    if args.json is not None:
        measure.write_json(args.json, record)
        print(f"fastgan bench: wrote {args.json}", file=sys.stderr)
    return 0


def run_bench(args) -> int:
    if args.json is not None:
        path = Path(args.json)
        if path.suffix != ".json" or path.is_dir():
            raise UsageError(f"fastgan bench: error: argument --json: must be a .json file path, got {args.json!r}")
    if args.host:
        return _run_host_bench(args)

    import torch

    from .bench import dcgan, measure

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        raise UsageError(f"fastgan bench: error: argument --device: {device!r} but CUDA is not available")
    _set_threads({"threads": args.threads, "device": device})
    dtype = {"bf16": "bfloat16", "fp32": "float32"}.get(args.dtype, args.dtype) or ("bfloat16" if gpu else "float32")
    size = args.image_size or (64 if gpu else 32)
    cfg = dcgan.StepConfig(
        batch=args.batch or (256 if gpu else 8), size=size, width=args.width or (64 if gpu else 16),
        latent=args.latent, dtype=dtype, cond=args.cond, device=device,
    )
    providers = args.providers or list(dcgan.PROVIDERS)
    log = lambda text: print(f"fastgan bench: {text}", file=sys.stderr, flush=True)  # noqa: E731
    log(f"{cfg.describe()} on {measure.device_name(device)}; providers {', '.join(providers)}")
    result = dcgan.run(cfg, providers, warmup=args.warmup or (5 if gpu else 2), steps=args.steps or (20 if gpu else 5),
                       log=log).as_dict()
    print(dcgan.format_table(result))
    # Skipped providers (CUDA-only ones on a CPU) are not failures; failed ones are.
    bad = [r["provider"] for r in result["records"] if r.get("error") or r["losses_finite"] is False]
    if args.json is not None:
        measure.write_json(args.json, result)
        log(f"wrote {args.json}")
    if bad:
        print(f"fastgan bench: error: failed or non-finite losses from {', '.join(bad)}", file=sys.stderr)
        return EXIT_FAILED
    return 0


# ---------------------------------------------------------------------- main
COMMANDS = [add_train, add_sample, add_eval, add_export, add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastgan", description="Train GANs that generate for a user's condition, fast.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="fastgan: %(message)s", stream=sys.stderr)
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except UsageError as error:
        print(str(error).splitlines()[0], file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C before training started (training handles its own)
        print("fastgan: interrupted", file=sys.stderr)
        return 128 + 2


if __name__ == "__main__":
    sys.exit(main())
