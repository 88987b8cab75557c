"""Screen CFGAN configurations on the tuning splits, validation only:

    python -m fastgan.recsys.tune --splits 0 1 --set lr_decay=0.98 ema=0.995

Tuning split s: the per-user 80/20 split of seed s, then the validation split carved
from its training part with seed s + TUNING_VALID_OFFSET (not the protocol's offset, so
tuning never looks at the protocol's validation splits either). Only the validation
split is scored: the best NDCG@20 and the epoch early stopping reached it.

--nested replays the whole protocol inside the tuning split, the validation split in the
role of the test split: the epoch count is chosen by early stopping on a validation
split carved once more from the fit part (seed s + NESTED_VALID_OFFSET), the model is
retrained on the whole fit part, and the retraining's validation score is recorded after
every eval_every epochs up to --scale-max times the chosen count. This measures what the
protocol's test figure depends on (how the chosen count transfers to the larger
retraining set, and how noisy the retraining's end point is), which the best
early-stopping score does not.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace

import torch

from .cfgan import CFGAN, CFGANConfig, parse_setting
from .data import MOVIELENS_100K, load_interactions
from .split import split_per_user

TUNING_VALID_OFFSET = 100
NESTED_VALID_OFFSET = 200


def _setting(text: str) -> tuple[str, object]:
    try:
        return parse_setting(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def tune(config: CFGANConfig, splits, data=MOVIELENS_100K, verbose=False) -> list[dict]:
    matrix = load_interactions(data).matrix()
    rows = []
    for split in splits:
        train, _ = split_per_user(matrix, 0.2, seed=split)
        fit, valid = split_per_user(train, 0.2, seed=split + TUNING_VALID_OFFSET)
        start = time.perf_counter()
        model = CFGAN(config, seed=split, verbose=verbose).fit(fit, valid)
        rows.append({"split": split, "valid": model.log.best_score, "epoch": model.log.best_epoch,
                     "seconds": time.perf_counter() - start})
    return rows


def nested(config: CFGANConfig, splits, scale_max: float = 1.5, data=MOVIELENS_100K, verbose=False) -> list[dict]:
    """Per split: the epoch chosen on the inner validation split, and the retraining's
    validation curve [(epoch, NDCG), ...] up to ceil(scale_max * that epoch)."""
    matrix = load_interactions(data).matrix()
    rows = []
    for split in splits:
        train, _ = split_per_user(matrix, 0.2, seed=split)
        fit, valid = split_per_user(train, 0.2, seed=split + TUNING_VALID_OFFSET)
        inner_fit, inner_valid = split_per_user(fit, 0.2, seed=split + NESTED_VALID_OFFSET)
        start = time.perf_counter()
        early = CFGAN(config, seed=split, verbose=verbose).fit(inner_fit, inner_valid)
        # The retraining as the protocol runs it (same seed, the chosen count), scored on
        # the way and never stopped early: its history is the curve, its score at the
        # chosen count what the protocol would report.
        epochs = math.ceil(scale_max * early.log.best_epoch)
        curve_config = replace(config, epochs=epochs, patience=epochs + 1)
        retrain = CFGAN(curve_config, seed=split, verbose=verbose).fit(fit, valid)
        rows.append({"split": split, "inner_valid": early.log.best_score, "epoch": early.log.best_epoch,
                     "curve": retrain.log.history, "seconds": time.perf_counter() - start})
    return rows


def score_at(curve, epoch: int) -> float:
    """The curve's value at the recorded epoch nearest to `epoch` (the earlier on a tie)."""
    return min(curve, key=lambda point: (abs(point[0] - epoch), point[0]))[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastgan.recsys.tune", description=__doc__.splitlines()[0])
    p.add_argument("--splits", type=int, nargs="+", default=[0])
    p.add_argument("--set", type=_setting, nargs="*", default=[], metavar="NAME=VALUE")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log", default=None, help="append one JSON line per run here")
    p.add_argument("--nested", action="store_true", help="replay the protocol inside the tuning split (see above)")
    p.add_argument("--scale-max", type=float, default=1.5, help="--nested: retrain up to this times the chosen epochs")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    changes = dict(args.set)
    if args.nested:
        for row in nested(CFGANConfig(**changes), args.splits, args.scale_max, verbose=args.verbose):
            at = {scale: score_at(row["curve"], round(scale * row["epoch"])) for scale in (1.0, 1.25, 1.5)}
            print(f"{changes or 'defaults'} split {row['split']} nested: epoch {row['epoch']} "
                  f"(inner validation {row['inner_valid']:.4f}); retrained, validation NDCG@20 at "
                  + ", ".join(f"{s}x {v:.4f}" for s, v in at.items())
                  + f", best {max(v for _, v in row['curve']):.4f} ({row['seconds']:.0f} s)", flush=True)
            if args.log:
                with open(args.log, "a") as f:
                    f.write(json.dumps({"set": changes, "nested": True, **row}) + "\n")
        return 0
    rows = tune(CFGANConfig(**changes), args.splits, verbose=args.verbose)
    for row in rows:
        print(f"{changes or 'defaults'} split {row['split']}: validation NDCG@20 {row['valid']:.4f} "
              f"at epoch {row['epoch']} ({row['seconds']:.0f} s)", flush=True)
        if args.log:
            with open(args.log, "a") as f:
                f.write(json.dumps({"set": changes, **row}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
