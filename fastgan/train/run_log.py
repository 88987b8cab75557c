"""What a run writes besides its checkpoint: metrics.jsonl (one record per log interval),
the progress bar, and the pictures (samples.png, samples/step_N.png, losses.png)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from . import plots

METRICS_FILE = "metrics.jsonl"
GRID_COLUMNS = 10
MAX_GRID_ROWS = 16  # image grids: one row per class, at most this many
MAX_PLOT_GROUPS = 64  # vector plots: one colour per class (the 25 modes of the grid toy)


def metrics_record(step: int, d_loss: float, g_loss: float, r1: float | None, steps_per_s: float,
                   images_per_step: int) -> dict:
    """One line of metrics.jsonl; r1 None leaves it out (a run without the penalty)."""
    record = {"step": step, "d_loss": d_loss, "g_loss": g_loss}
    if r1 is not None:
        record["r1"] = r1
    record.update(steps_per_s=steps_per_s, images_per_s=steps_per_s * images_per_step)
    return record


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / METRICS_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


def trim_metrics(run_dir: Path, step: int) -> list[dict] | None:
    """On resume, keep only the metrics up to the checkpoint's step (later ones are
    about to be redone) and return them as the loss curve's history; None when the run
    has no metrics file."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    history = [r for r in records if r["step"] <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in history))
    return history


def progress_bar(total: int, initial: int):
    from tqdm.auto import tqdm

    # Redrawn 10 times a second on a terminal; in a log file, a line every 30 s.
    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, desc="train",
                mininterval=0.1 if interactive else 30.0)


def grid_conditions(data, generator, device) -> tuple:
    """(conditions, row labels) of the sample grid: every class (at most 16 rows of
    images, 64 groups of vectors), else the first distinct user ids or attribute
    vectors of the data; (None, None) when unconditional."""
    cond = getattr(data, "cond", None)
    kind = getattr(generator, "cond_kind", "none")
    names = getattr(data, "cond_names", None)
    if kind == "none" or cond is None:
        return None, None
    if kind == "label":
        cap = MAX_GRID_ROWS if getattr(data, "is_image", True) else MAX_PLOT_GROUPS
        rows = torch.arange(min(generator.cond_size, cap), device=device)
        return rows, [names[i] if names else str(i) for i in rows.tolist()]
    distinct = []
    for row in cond[: 10_000]:
        if not any(torch.equal(row, seen) for seen in distinct):
            distinct.append(row)
        if len(distinct) == 8:
            break
    rows = torch.stack(distinct)
    if kind == "user":
        return rows, [f"user {int(u)}" for u in rows]
    return rows, [describe_attributes(r, names) for r in rows]


def describe_attributes(row: torch.Tensor, names) -> str:
    values = row.tolist()
    if names and all(v in (0.0, 1.0) for v in values):
        on = [n for n, v in zip(names, values) if v == 1.0]
        text = "+".join(on) if on else "(none)"
    else:
        text = ",".join(f"{v:g}" for v in values)
    return text if len(text) <= 24 else text[:21] + "..."


def write_pictures(run_dir: Path, step: int, samples: torch.Tensor, labels, data, history: list[dict]) -> None:
    """samples.png (+ samples/step_N.png) from a sample grid [rows, columns, ...], and
    losses.png from the metrics history."""
    run_dir = Path(run_dir)
    if samples.dim() == 5:  # images [rows, columns, C, H, W]
        plots.image_grid(samples, run_dir / "samples.png", row_labels=labels)
    else:
        real = getattr(data, "x", None)
        real = real[:2000] if real is not None and real.dim() == 2 else None
        plots.vector_plot(samples, run_dir / "samples.png", row_labels=labels, real=real)
    (run_dir / "samples").mkdir(exist_ok=True)
    (run_dir / "samples" / f"step_{step:06d}.png").write_bytes((run_dir / "samples.png").read_bytes())
    if history:
        plots.loss_curve(history, run_dir / "losses.png")
