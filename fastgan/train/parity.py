"""Backend parity, end to end: the same training run (same options, same seed) on the
reference backend and on the Triton kernels must reach the same quality.

    TRITON_INTERPRET=1 python -m fastgan.train.parity --data ring --steps 300 --width 64 --batch-size 64

Any `fastgan train` option sets the run (--data, --steps, --width, --loss, ...). Each
backend trains it in this process; the trained (EMA) generator is then scored with
`fastgan eval`'s metric under the reference backend, so both runs are measured with
the same instrument and only training differs. Checks:

- the first step's losses agree to --loss-rtol (the models start from the same weights
  and see the same batches; only rounding differs);
- every score agrees within the noise of training itself: the reference run is
  repeated with --noise-seeds other seeds, and the triton run passes a score when it
  lies within 3 standard deviations (over those runs) of the reference run's.

Exit status 0 when both hold, 1 when parity fails, 2 on bad options.
"""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
import torch

from .._backend import BACKENDS, use_backend

NOISE_SIGMAS = 3.0
EXIT_FAILED = 1
QUIET = dict(log_every=1, checkpoint_every=10**9, sample_every=10**9)


def train_and_score(options: dict, backend: str, *, eval_seeds=(0, 1, 2)) -> dict:
    """Train the run `options` (fastgan train's options, unset ones from the preset) on
    `backend` in memory; {'backend', 'seed', 'd_loss', 'g_loss' (per step), 'scores'
    ({metric: mean over eval seeds}), 'samples' (the first eval seed's, for exact
    comparisons), 'seconds'}."""
    from .evaluation import evaluate_generator, make_sampler
    from .recipes import make_trainer, resolve

    opts = resolve(dict(options, **QUIET))
    start = time.perf_counter()
    with use_backend(backend):
        trainer = make_trainer(opts, None, progress=False)
        trainer.fit(opts["steps"])
    seconds = time.perf_counter() - start
    generator = (trainer.ema.module if trainer.ema is not None else trainer.G).eval()
    with use_backend("reference"):
        report = evaluate_generator(generator, trainer.data, seeds=tuple(eval_seeds), device=trainer.device)
        torch.manual_seed(eval_seeds[0])
        conditional = generator.cond_kind != "none"
        request = torch.arange(64) % max(generator.cond_size, 1) if conditional else 64
        samples = make_sampler(generator, conditional=conditional, device=trainer.device)(request)
    return {
        "backend": backend,
        "seed": opts["seed"],
        "d_loss": [r["d_loss"] for r in trainer.history],
        "g_loss": [r["g_loss"] for r in trainer.history],
        "scores": {name: mean for name, (mean, _) in report["overall"].items()},
        "samples": samples,
        "seconds": seconds,
    }


def compare(reference: dict, other: dict, noise: list[dict], *, loss_rtol: float = 1e-3) -> dict:
    """The parity verdict of run `other` against `reference` (same options and seed);
    `noise` holds reference runs at other seeds (their spread is the tolerance)."""
    checks = []
    for name in ("d_loss", "g_loss"):
        a, b = reference[name][0], other[name][0]
        ok = math.isfinite(b) and abs(a - b) <= loss_rtol * max(abs(a), 1e-12)
        checks.append({"check": f"{name} at step 1", "reference": a, other["backend"]: b,
                       "tolerance": loss_rtol * abs(a), "ok": bool(ok)})
    for name, value in reference["scores"].items():
        runs = [v for v in [value] + [run["scores"][name] for run in noise] if math.isfinite(v)]
        spread = float(np.std(runs, ddof=1)) if len(runs) > 1 else 0.0
        tolerance = NOISE_SIGMAS * spread
        mine = other["scores"][name]
        # An infinite score (the reverse KL with no high-quality sample) must match exactly.
        ok = mine == value or (math.isfinite(mine) and math.isfinite(value) and abs(mine - value) <= tolerance)
        checks.append({"check": name, "reference": value, other["backend"]: mine, "tolerance": tolerance,
                       "ok": bool(ok)})
    steps = min(len(reference["d_loss"]), len(other["d_loss"]))
    apart = [s + 1 for s in range(steps)
             if abs(reference["d_loss"][s] - other["d_loss"][s]) > 1e-2 * max(abs(reference["d_loss"][s]), 1e-12)]
    return {
        "ok": all(c["ok"] for c in checks),
        "checks": checks,
        # Informational: GAN training amplifies rounding differences, so the runs drift
        # apart over many steps even when every kernel is right.
        "first_step_d_loss_apart_1pct": apart[0] if apart else None,
        "max_sample_difference": float((reference["samples"] - other["samples"]).abs().max()),
    }


def _format(result: dict, backend: str) -> str:
    lines = [f"| check | reference | {backend} | tolerance | ok |", "| --- | --- | --- | --- | --- |"]
    for c in result["checks"]:
        lines.append(f"| {c['check']} | {c['reference']:.6g} | {c[backend]:.6g} | {c['tolerance']:.3g} | "
                     f"{'yes' if c['ok'] else 'NO'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from .. import cli
    from ..cli import arguments
    from ..cli.train import given_options

    parser = arguments.Parser(
        prog="python -m fastgan.train.parity", description=__doc__.split("\n\n")[0],
        epilog="Every other option is a `fastgan train` option (see fastgan train -h).", allow_abbrev=False,
    )
    parser.add_argument("--backend", choices=[b for b in BACKENDS if b != "reference"], default="triton",
                        help="the backend compared with the reference (default: triton)")
    parser.add_argument("--noise-seeds", type=arguments.nonneg_int, default=2,
                        help="reference runs at other seeds that measure training noise (default 2)")
    parser.add_argument("--eval-seeds", type=arguments.positive_int, default=3, help="noise seeds of the scoring (default 3)")
    parser.add_argument("--loss-rtol", type=arguments.nonneg_float, default=1e-3,
                        help="relative tolerance of the first step's losses (default 1e-3)")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    try:
        own, rest = parser.parse_known_args(argv)
        train_args = cli.build_parser().parse_args(["train", *rest])
    except cli.UsageError as error:
        print(str(error).splitlines()[0].replace("fastgan train", parser.prog), file=sys.stderr)
        return cli.EXIT_USAGE
    options = given_options(train_args)
    for name in ("resume", "out"):
        if getattr(train_args, name):
            print(f"{parser.prog}: error: argument --{name}: parity runs train in memory; leave it out", file=sys.stderr)
            return cli.EXIT_USAGE
    arguments.set_threads(options)
    eval_seeds = tuple(range(own.eval_seeds))
    try:
        runs = {"reference": train_and_score(options, "reference", eval_seeds=eval_seeds)}
        seed = runs["reference"]["seed"]
        noise = [train_and_score(dict(options, seed=seed + 1 + i), "reference", eval_seeds=eval_seeds)
                 for i in range(own.noise_seeds)]
        runs[own.backend] = train_and_score(options, own.backend, eval_seeds=eval_seeds)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return cli.EXIT_USAGE
    except RuntimeError as error:  # the backend cannot run here (no interpreter, no triton)
        print(f"{parser.prog}: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return cli.EXIT_USAGE
    result = compare(runs["reference"], runs[own.backend], noise, loss_rtol=own.loss_rtol)
    steps = len(runs["reference"]["d_loss"])
    print(f"{steps} steps, seed {seed}: reference {runs['reference']['seconds']:.1f} s, "
          f"{own.backend} {runs[own.backend]['seconds']:.1f} s; scores are means over {own.eval_seeds} eval seeds, "
          f"tolerance {NOISE_SIGMAS:g} std over {1 + own.noise_seeds} reference runs")
    print(_format(result, own.backend))
    print(f"largest sample difference (same noise): {result['max_sample_difference']:.3g}; "
          f"D losses first apart by 1%: step {result['first_step_d_loss_apart_1pct']}")
    print("parity: " + ("holds" if result["ok"] else "FAILS"))
    if own.json:
        from .._provenance import provenance

        record = {"command": " ".join([parser.prog, *(argv if argv is not None else sys.argv[1:])]), **provenance(),
                  "options": {k: v for k, v in options.items()}, **result,
                  "runs": {name: {k: v for k, v in run.items() if k != "samples"} for name, run in runs.items()},
                  "noise_runs": [{k: v for k, v in run.items() if k != "samples"} for run in noise]}
        with open(own.json, "w") as f:
            json.dump(record, f, indent=2)
        print(f"wrote {own.json}")
    return 0 if result["ok"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
