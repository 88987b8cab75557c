"""`fastgan eval recsys` (also `python -m fastgan.recsys`): CFGAN, EASE and TopPop on
one data set under the protocol of fastgan.recsys.protocol, mean +- std over seeds.

    fastgan eval recsys                       # MovieLens-100K from recbole, 3 seeds
    fastgan eval recsys --data ratings.csv --models EASE TopPop
    fastgan eval recsys --json benchmarks/results/recsys-ml100k.json
    fastgan eval recsys --models CFGAN --demographics ml-100k --choose-demographics   # per seed, on validation

Bad input is a one-line error and exit status 2, as everywhere in the fastgan command.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import torch

from .._provenance import provenance
from .arguments import EXIT_USAGE, Parser, UsageError, device_spec, nonneg_float, nonneg_int, positive_int
from ..recsys.cfgan import CFGANConfig, parse_setting
from ..recsys.data import MOVIELENS_100K, load_interactions, load_user_features
from ..recsys.protocol import COLUMNS, EASE_L2_GRID, MODELS, evaluate_seed, format_table, summarize


DESCRIPTION = ("Top-k recommendation quality of CFGAN (a conditional GAN on fastgan's fused blocks) against TopPop "
               "and EASE, random per-user 80/20 split, hyperparameters chosen on a validation split.")


def build_parser() -> Parser:
    p = Parser(prog="fastgan eval recsys", description=DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p) -> None:
    """The command's options, on `p` (its own parser, or `fastgan eval`'s recsys subparser)."""
    p.add_argument("--data", default=MOVIELENS_100K,
                   help=f"{MOVIELENS_100K!r} (read from the installed recbole package) or a .inter / u.data / "
                        "user,item[,rating] CSV file (default: %(default)s)")
    p.add_argument("--min-rating", type=nonneg_float, default=None,
                   help="keep only ratings >= this as positives (default: every rated pair is a positive)")
    p.add_argument("--seeds", type=nonneg_int, nargs="+", default=[0, 1, 2], help="one split and model init per seed")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--demographics", default=None, metavar="USER_FILE",
                   help=f"condition CFGAN on age/gender/occupation from this .user / u.user file "
                        f"({MOVIELENS_100K!r} for the one in recbole)")
    p.add_argument("--choose-demographics", action="store_true",
                   help="with --demographics: per seed, condition CFGAN on them only if validation prefers it")
    p.add_argument("--cold-start", type=nonneg_int, default=None, metavar="N",
                   help="also report users with at most N training positives")
    p.add_argument("--epochs", type=positive_int, default=None, help="CFGAN's most epochs (early stopping picks fewer)")
    p.add_argument("--cfgan", nargs="+", default=[], metavar="NAME=VALUE",
                   help="CFGAN settings that differ from CFGANConfig's defaults, e.g. beta1=0.9 ease_base_l2=500")
    p.add_argument("--device", type=device_spec, default="cpu", help="torch device for CFGAN (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results here as JSON")
    p.add_argument("--verbose", action="store_true", help="print validation scores while training")


def command_line(args) -> str:
    """The command that reproduces a run, from its parsed options (recorded in the JSON)."""
    words = ["fastgan", "eval", "recsys"]
    defaults = build_parser().parse_args([])
    for action in build_parser()._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = getattr(args, action.dest)
        if value == getattr(defaults, action.dest):
            continue
        flag = action.option_strings[0]
        if value is True:
            words.append(flag)
        else:
            words += [flag, *map(str, value if isinstance(value, list) else [value])]
    return " ".join(words)


def main(argv: list[str] | None = None) -> int:
    """Run the command; 0 on success, 2 (after one line on stderr) on bad input."""
    try:
        return run(build_parser().parse_args(argv))
    except UsageError as error:
        print(str(error).splitlines()[0], file=sys.stderr)
        return EXIT_USAGE


def run(args) -> int:
    """The command on parsed options; bad input raises UsageError."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"fastgan eval recsys: error: argument --device: {args.device!r} but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        settings = dict(parse_setting(text) for text in args.cfgan)
        if args.epochs is not None:
            settings["epochs"] = args.epochs
        config = CFGANConfig(**settings)
    except ValueError as error:
        raise UsageError(f"fastgan eval recsys: error: argument --cfgan: {error}") from None
    try:
        data = load_interactions(args.data, min_rating=args.min_rating)
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise UsageError(f"fastgan eval recsys: error: argument --data: {error}") from None
    matrix = data.matrix()
    try:
        features = None if args.demographics is None else load_user_features(args.demographics, data.user_ids)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"fastgan eval recsys: error: argument --demographics: {error}") from None
    if args.choose_demographics and features is None:
        raise UsageError("fastgan eval recsys: error: argument --choose-demographics: needs --demographics")
    print(f"data {args.data}: {data.n_users} users, {data.n_items} items, {matrix.nnz} positives; "
          f"seeds {args.seeds}", flush=True)

    start = time.perf_counter()
    per_seed = []
    for seed in args.seeds:
        results = evaluate_seed(matrix, seed, models=args.models, cfgan_config=config, user_features=features,
                                choose_features=args.choose_demographics, cold_start_max=args.cold_start,
                                device=args.device, verbose=args.verbose)
        per_seed.append(results)
        print(f"seed {seed}: " + ", ".join(
            f"{m} NDCG@20 {r.test['NDCG@20']:.4f} ({r.seconds:.0f} s, chose {r.chosen or '-'})" for m, r in results.items()
        ), flush=True)
    wall = time.perf_counter() - start

    table = summarize(per_seed)
    print(f"\nmean ± std over {len(args.seeds)} seeds (std ddof=1), test split, training items filtered:")
    print(format_table(table))
    cold = summarize(per_seed, cold=True) if args.cold_start is not None else {}
    if cold:
        print(f"\ncold-start users (at most {args.cold_start} training positives):")
        print(format_table(cold))
    print(f"\nwall time {wall:.0f} s")

    if args.json:
        record = {
            "command": command_line(args),
            **provenance(),
            "data": {"source": str(args.data), "users": data.n_users, "items": data.n_items, "positives": int(matrix.nnz)},
            "seeds": args.seeds,
            "cfgan_config": dataclasses.asdict(config),
            "ease_l2_grid": list(EASE_L2_GRID),
            "columns": list(COLUMNS),
            "summary": {m: {c: {"mean": v[0], "std": v[1]} for c, v in row.items()} for m, row in table.items()},
            "cold_start": {m: {c: {"mean": v[0], "std": v[1]} for c, v in row.items()} for m, row in cold.items()},
            "per_seed": [
                {m: {"test": r.test, "valid": r.valid, "chosen": r.chosen, "seconds": r.seconds,
                     "cold_start": r.cold_start} for m, r in results.items()}
                for results in per_seed
            ],
            "wall_seconds": wall,
        }
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
        print(f"wrote {args.json}")
    return 0

