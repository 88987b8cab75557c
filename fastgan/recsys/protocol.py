"""The evaluation protocol: per seed, a random per-user 80/20 train/test split and a
validation split carved from training; every hyperparameter (EASE's l2, CFGAN's epoch
count) is chosen on validation, the model is refit on the whole training split, and the
test split is scored once. The test split never chooses anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..metrics.ranking import ranking_metrics, ranking_metrics_per_user
from .baselines import EASE, TopPop
from .cfgan import CFGAN, CFGANConfig
from .split import split_per_user

MODELS = ("CFGAN", "EASE", "TopPop")
KS = (5, 20)
# The columns of the report: P@5/20, R@5/20, NDCG@5/20, MRR@5.
COLUMNS = ("P@5", "P@20", "R@5", "R@20", "NDCG@5", "NDCG@20", "MRR@5")
EASE_L2_GRID = (50.0, 100.0, 200.0, 500.0, 1000.0)
# Seeds of validation splits are offset so they never coincide with a test split's seed.
VALID_SEED_OFFSET = 10_000


@dataclass
class ModelResult:
    test: dict[str, float]
    valid: float  # the validation metric of the chosen hyperparameters
    chosen: dict  # what validation chose
    seconds: float
    cold_start: dict[str, float] = field(default_factory=dict)


def _test_scores(scores, train, test, cold_users=None) -> tuple[dict[str, float], dict[str, float]]:
    metrics = ranking_metrics(scores, test, train, KS)
    cold = {}
    if cold_users is not None and len(cold_users):
        users, values = ranking_metrics_per_user(scores, test, train, KS)
        keep = np.isin(users.numpy(), cold_users)
        cold = {name: float(v.numpy()[keep].mean()) for name, v in values.items() if keep.any()}
    return metrics, cold


def evaluate_seed(
    matrix: sp.spmatrix,
    seed: int,
    *,
    models=MODELS,
    cfgan_config: CFGANConfig | None = None,
    ease_l2_grid=EASE_L2_GRID,
    user_features: np.ndarray | None = None,
    choose_features: bool = False,
    test_fraction: float = 0.2,
    valid_fraction: float = 0.2,
    cold_start_max: int | None = None,
    metric: str = "NDCG@20",
    device: str = "cpu",
    verbose: bool = False,
) -> dict[str, ModelResult]:
    """Results of each model on one seed's split. cold_start_max: also score the users
    with at most that many training positives. choose_features: CFGAN's early-stopping
    run is made with and without user_features, and only the one with the higher
    validation score is retrained and tested (chosen["features"] says which)."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"models must be among {MODELS}, got {unknown}")
    if choose_features and user_features is None:
        raise ValueError("choose_features needs user_features")
    train, test = split_per_user(matrix, test_fraction, seed=seed)
    fit, valid = split_per_user(train, valid_fraction, seed=seed + VALID_SEED_OFFSET)
    k = int(metric.split("@")[1])
    cold_users = None
    if cold_start_max is not None:
        cold_users = np.nonzero(np.asarray(train.sum(1)).ravel() <= cold_start_max)[0]
    results = {}

    if "TopPop" in models:
        start = time.perf_counter()
        valid_value = ranking_metrics(TopPop().fit(fit).score(fit), valid, fit, k)[metric]
        scores = TopPop().fit(train).score(train)
        test_metrics, cold = _test_scores(scores, train, test, cold_users)
        results["TopPop"] = ModelResult(test_metrics, valid_value, {}, time.perf_counter() - start, cold)

    if "EASE" in models:
        start = time.perf_counter()
        by_l2 = {l2: ranking_metrics(EASE(l2).fit(fit).score(fit), valid, fit, k)[metric] for l2 in ease_l2_grid}
        best_l2 = max(by_l2, key=by_l2.get)
        scores = EASE(best_l2).fit(train).score(train)
        test_metrics, cold = _test_scores(scores, train, test, cold_users)
        results["EASE"] = ModelResult(test_metrics, by_l2[best_l2], {"l2": best_l2}, time.perf_counter() - start, cold)
        if verbose:
            print(f"seed {seed} EASE validation {metric} by l2: {by_l2}", flush=True)

    if "CFGAN" in models:
        start = time.perf_counter()
        config = cfgan_config or CFGANConfig()
        if config.metric != metric:
            raise ValueError(f"cfgan_config.metric is {config.metric!r} but the protocol selects on {metric!r}")
        options = [user_features, None] if choose_features else [user_features]
        runs = [(CFGAN(config, user_features=features, seed=seed, device=device, verbose=verbose).fit(fit, valid),
                 features) for features in options]
        # max keeps the first of equal scores: the features on a tie.
        early, features = max(runs, key=lambda run: run[0].log.best_score)
        final = CFGAN(early.refit_config(), user_features=features, seed=seed, device=device).fit(train)
        test_metrics, cold = _test_scores(final.score(train), train, test, cold_users)
        chosen = {"epochs": early.log.best_epoch}
        if choose_features:
            chosen["features"] = features is not None
            if verbose:
                print(f"seed {seed} CFGAN validation {metric} with features {runs[0][0].log.best_score:.4f}, "
                      f"without {runs[1][0].log.best_score:.4f}", flush=True)
        results["CFGAN"] = ModelResult(test_metrics, early.log.best_score, chosen, time.perf_counter() - start, cold)
        if verbose:
            print(f"seed {seed} CFGAN best validation {metric} {early.log.best_score:.4f} "
                  f"at epoch {early.log.best_epoch}", flush=True)
    return results


def summarize(per_seed: list[dict[str, ModelResult]], columns=COLUMNS, *, cold: bool = False) -> dict[str, dict[str, tuple[float, float]]]:
    """model -> column -> (mean, std over seeds; std with ddof=1, 0 for one seed)."""
    table = {}
    for model in per_seed[0]:
        rows = [getattr(r[model], "cold_start" if cold else "test") for r in per_seed]
        if not rows[0]:
            continue
        table[model] = {}
        for column in columns:
            values = np.array([row[column] for row in rows])
            table[model][column] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)
    return table


def format_table(table: dict[str, dict[str, tuple[float, float]]]) -> str:
    columns = list(next(iter(table.values())))
    lines = ["| model | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for model, row in table.items():
        lines.append(f"| {model} | " + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in row.values()) + " |")
    return "\n".join(lines)
