"""Screen CFGAN configurations on the tuning splits, validation only:

    python -m fastgan.recsys.tune --splits 0 1 --set lr_decay=0.98 ema=0.995

Tuning split s: the per-user 80/20 split of seed s, then the validation split carved
from its training part with seed s + TUNING_VALID_OFFSET (not the protocol's offset, so
tuning never looks at the protocol's validation splits either). Only the validation
split is scored: the best NDCG@20 and the epoch early stopping reached it.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from .cfgan import CFGAN, CFGANConfig, parse_setting
from .data import MOVIELENS_100K, load_interactions
from .split import split_per_user

TUNING_VALID_OFFSET = 100


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastgan.recsys.tune", description=__doc__.splitlines()[0])
    p.add_argument("--splits", type=int, nargs="+", default=[0])
    p.add_argument("--set", type=_setting, nargs="*", default=[], metavar="NAME=VALUE")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log", default=None, help="append one JSON line per run here")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    changes = dict(args.set)
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
