"""`fastgan eval`: offline scores of a checkpoint's samples; `fastgan eval recsys` is eval_recsys.py."""

from __future__ import annotations

from .arguments import UsageError, Parser, device_spec, positive_int, set_threads


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
    p.add_argument("--seeds", type=positive_int, help="score this many noise seeds, 0..N-1 (default 3)")
    p.add_argument("--json", metavar="PATH", help="also write the scores as JSON")
    p.add_argument("--no-ema", action="store_true", help="score the trained generator, not its moving average")
    p.add_argument("--device", type=device_spec, default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--threads", type=positive_int, help="CPU threads for PyTorch (default 1 on CPU)")
    from . import eval_recsys

    targets = p.add_subparsers(dest="eval_target", metavar="recsys", prog="fastgan eval", parser_class=Parser)
    recsys = targets.add_parser("recsys", help="CFGAN against TopPop and EASE on MovieLens-100K or your interactions",
                                description=eval_recsys.DESCRIPTION)
    eval_recsys.add_arguments(recsys)


def run_eval(args) -> int:
    import json

    import torch

    from .._provenance import provenance
    from . import eval_recsys
    from ..train import checkpoint as ckpt
    from ..train import evaluation

    if args.eval_target == "recsys":
        if args.ckpt is not None:
            raise UsageError("fastgan eval recsys: error: argument --ckpt: scores a checkpoint; leave it out for recsys")
        return eval_recsys.run(args)
    if args.ckpt is None:
        raise UsageError("fastgan eval: error: give --ckpt (a checkpoint or run directory), or `fastgan eval recsys`")
    args.seeds = 3 if args.seeds is None else args.seeds
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"fastgan eval: error: argument --device: {args.device!r} but CUDA is not available")
    set_threads({"threads": args.threads, "device": args.device})
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
