"""Quality of one `fastgan train` configuration over several training seeds: each seed
is trained with `fastgan train ... --seed S` (its CPU time measured), scored with
`fastgan eval --ckpt` (mean over noise seeds 0, 1, 2), and the overall scores are
summarised over the training seeds as mean, worst and per seed. docs/quality.md's
tables come from these files.

    python benchmarks/quality_seeds.py --name digits --seeds 0 1 2 \
        --json benchmarks/results/quality-digits-3-seeds.json -- --data digits

Everything after `--` goes to `fastgan train` unchanged. Runs go to --runs/NAME-seed-S;
a finished run there (checkpoint.pt and the train_time.json this script writes) is
scored again without retraining.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# For each score: is a higher value better? (worst = min when True, max when False)
HIGHER_IS_BETTER = {"accuracy": True, "fd": False, "precision": True, "recall": True, "density": True,
                    "coverage": True, "modes": True, "high_quality": True, "reverse_kl": False}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_seed(name: str, seed: int, train_args: list[str], runs: Path, nice: int) -> dict:
    run_dir = runs / f"{name}-seed-{seed}"
    prefix = ["nice", "-n", str(nice)] if nice else []
    fastgan = [sys.executable, "-m", "fastgan"]
    timing = run_dir / "train_time.json"
    if (run_dir / "checkpoint.pt").exists() and timing.exists():
        # A finished run of the same command (e.g. the pilot of seed 0): scored, not retrained.
        times = json.loads(timing.read_text())
        cpu, wall = times["cpu_s"], times["wall_s"]
    else:
        cpu0, wall0 = _children_cpu(), time.perf_counter()
        subprocess.run(prefix + fastgan + ["train", *train_args, "--seed", str(seed), "--out", str(run_dir),
                                           "--no-progress"], check=True)
        cpu, wall = _children_cpu() - cpu0, time.perf_counter() - wall0
        timing.write_text(json.dumps({"cpu_s": cpu, "wall_s": wall}))
    scores = run_dir / "eval.json"
    subprocess.run(prefix + fastgan + ["eval", "--ckpt", str(run_dir), "--json", str(scores)], check=True,
                   stdout=subprocess.DEVNULL)
    record = json.loads(scores.read_text())
    return {"seed": seed, "train_cpu_s": round(cpu, 1), "train_wall_s": round(wall, 1), "eval": record}


def summarise(per_seed: list[dict]) -> dict:
    out = {}
    for score in per_seed[0]["eval"]["overall"]:
        values = [s["eval"]["overall"][score]["mean"] for s in per_seed]
        better = HIGHER_IS_BETTER.get(score, True)
        out[score] = {"mean": statistics.fmean(values), "worst": min(values) if better else max(values),
                      "per_seed": values}
    cpu = [s["train_cpu_s"] for s in per_seed]
    out["train_cpu_s"] = {"mean": statistics.fmean(cpu), "worst": max(cpu), "per_seed": cpu}
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--runs", type=Path, default=Path("runs/quality"))
    p.add_argument("--nice", type=int, default=10, help="run training and scoring under nice (0: off)")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv[:split])
    train_args = argv[split + 1:]
    per_seed = []
    for seed in args.seeds:
        per_seed.append(run_seed(args.name, seed, train_args, args.runs, args.nice))
        s = per_seed[-1]
        print(f"seed {seed}: {s['train_cpu_s']} s CPU, "
              + ", ".join(f"{k} {v['mean']:.4f}" for k, v in s["eval"]["overall"].items()), flush=True)
    summary = summarise(per_seed)
    first = per_seed[0]["eval"]
    record = {"command": "python benchmarks/quality_seeds.py " + " ".join(argv),
              "train_command": first["train_command"], "commit": first.get("commit"), "date": first.get("date"),
              "machine": first.get("machine"), "torch": first.get("torch"),
              "cpu_note": f"CPU seconds (user + sys) of `fastgan train` on {os.cpu_count()} shared cores",
              "summary": summary, "per_seed": per_seed}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2))
    for score, v in summary.items():
        print(f"{score}: mean {v['mean']:.4f}, worst {v['worst']:.4f}, per seed "
              + ", ".join(f"{x:.4f}" for x in v["per_seed"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
