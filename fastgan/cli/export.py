"""`fastgan export`: a checkpoint's generator as an AOTInductor package for the C++ sampler."""

from __future__ import annotations

import sys
from pathlib import Path

from .arguments import EXIT_FAILED, UsageError, device_spec


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
    p.add_argument("--device", type=device_spec, default="auto",
                   help="the device the package runs on: auto (CUDA when available, default), cpu, cuda or cuda:N")


def run_export(args) -> int:
    import os

    import torch

    from ..export import ExportError, export_generator
    from ..train import checkpoint as ckpt

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
