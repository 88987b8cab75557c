"""`fastgan sample`: a grid or plot of samples for one condition from a checkpoint."""

from __future__ import annotations

import math

from .arguments import UsageError, device_spec, nonneg_int, positive_int


def add_sample(subparsers) -> None:
    p = subparsers.add_parser(
        "sample", help="generate samples for a condition from a checkpoint",
        description="Generate samples from a trained generator (its EMA weights when the run kept them).",
    )
    p.set_defaults(handler=run_sample)
    p.add_argument("--ckpt", required=True, help="a checkpoint file or a run directory")
    p.add_argument("--cond", help="a class label (number or name), a user id, or attributes: "
                   "comma-separated numbers or name=value pairs (unnamed attributes are 0)")
    p.add_argument("--n", type=positive_int, default=16, help="number of samples (default 16)")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--no-ema", action="store_true", help="use the trained generator, not its moving average")
    p.add_argument("--device", type=device_spec, default="cpu", help="cpu (default), cuda or cuda:N")


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

    from ..train import checkpoint as ckpt
    from ..train import plots

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
