"""Score a trained generator with the metric that fits its data: what `fastgan eval
--ckpt` runs.

- images conditioned on class labels (the digits, a labelled image folder): a
  FeatureClassifier trained on the real images, then conditional accuracy, Frechet
  distance, precision/recall and density/coverage against the real set
  (fastgan.metrics.evaluate_conditional);
- the 2-D ring and grid: mode coverage under the VEEGAN/PacGAN protocol
  (evaluate_modes_conditional when the generator takes the mode index as its
  condition, evaluate_modes when it is unconditional).

Every score is a mean and std over seeds; a seed fixes the noise and nothing else.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import metrics as M
from . import checkpoint as ckpt
from .recipes import data_kind, load_data, resolve

# Larger image sets are scored against a random subset of this many real images: the
# k-NN scores compare every fake with every real sample.
MAX_REFERENCE = 10_000
SAMPLE_BATCH = 4096


def _conditions_for(generator: nn.Module, labels: torch.Tensor):
    """The generator's condition input for class (or mode) indices `labels`."""
    if generator.cond_kind == "attributes":  # a one-hot reading of the labels (--cond attributes)
        return torch.nn.functional.one_hot(labels, generator.cond_size).float()
    return labels


def make_sampler(generator: nn.Module, *, conditional: bool, device="cpu"):
    """A sampler for fastgan.metrics: sample(conditions [N] int64) -> samples [N, ...] when
    conditional, else sample(n) -> samples [n, ...]. The noise is drawn on the CPU from
    torch's global generator (which the metrics seed), so a seed gives the same noise on
    every device."""
    generator = generator.eval()

    @torch.no_grad()
    def sample(request):
        if conditional:
            labels = request
            n = labels.shape[0]
        else:
            labels, n = None, int(request)
        z = torch.randn(n, generator.latent_dim)
        out = []
        for start in range(0, n, SAMPLE_BATCH):
            part = slice(start, start + SAMPLE_BATCH)
            c = None if labels is None else _conditions_for(generator, labels[part]).to(device)
            out.append(generator(z[part].to(device), c).float().cpu())
        return torch.cat(out)

    return sample


def _reference(data) -> tuple[torch.Tensor, torch.Tensor]:
    """(real images as floats in [-1, 1], labels), at most MAX_REFERENCE of them."""
    index = torch.arange(len(data))
    if len(data) > MAX_REFERENCE:
        index = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:MAX_REFERENCE].sort().values
    x, labels = data[index]
    return x.float().cpu(), labels.cpu()


def evaluate_generator(generator: nn.Module, data, *, seeds=(0, 1, 2), samples: int = M.PROTOCOL_SAMPLES,
                       device="cpu") -> dict:
    """Scores of `generator` (trained on `data`, a fastgan.data.ArrayData), as
    {"metric", "overall": {name: (mean, std)}, "per_class": {condition: {...}},
    "samples": samples per seed, "reference": real samples compared with}.

    samples applies to the 2-D sets (the protocol scores 2,500); an image generator
    draws as many samples of each class as the real set holds.
    """
    kind = generator.cond_kind
    if not data.is_image and data.name in ("ring", "grid"):
        if kind == "none":
            summary = M.evaluate_modes(make_sampler(generator, conditional=False, device=device), data.name,
                                       seeds=seeds, n=samples)
            return {"metric": "modes", "overall": summary, "per_class": {}, "samples": samples, "reference": None}
        if kind == "attributes" and generator.cond_size != data.cond_size:
            raise ValueError(f"the generator takes {generator.cond_size} attributes; scoring {data.name} needs a "
                             f"one-hot mode index ({data.cond_size})")
        result = M.evaluate_modes_conditional(make_sampler(generator, conditional=True, device=device), data.name,
                                              seeds=seeds, n=samples)
        return {"metric": "modes_conditional", **result, "samples": samples, "reference": None}
    if not data.is_image:
        raise ValueError(f"fastgan eval scores images and the ring and grid 2-D sets; {data.name!r} is neither")
    if kind != "label":
        raise ValueError(
            f"fastgan eval scores image generators conditioned on class labels (against a classifier trained on "
            f"the real images); this generator's condition is {kind!r}"
        )
    real, labels = _reference(data)
    classifier = M.train_classifier(real, labels, seed=0)
    result = M.evaluate_conditional(make_sampler(generator, conditional=True, device=device), classifier, real, labels,
                                    seeds=seeds)
    names = data.cond_names
    per_class = {(names[c] if names else str(c)): row for c, row in result["per_class"].items()}
    return {"metric": "conditional", "overall": result["overall"], "per_class": per_class,
            "samples": len(real), "reference": len(real)}


def evaluate_checkpoint(path, *, seeds=(0, 1, 2), ema: bool = True, device="cpu",
                        samples: int = M.PROTOCOL_SAMPLES) -> dict:
    """evaluate_generator on a `fastgan train` checkpoint (file or run directory): its
    EMA generator unless ema is False, its data read again from the stored options.
    Adds "checkpoint", "step", "data", "generator" ('ema' or 'trained') and "options"."""
    generator, state = ckpt.load_generator(path, ema=ema, device=device)
    run = state["config"].get("run") or {}
    opts = run.get("options")
    if not opts:
        raise ValueError(f"{str(path)!r} was not written by `fastgan train` (it stores no data options to score against)")
    opts = dict(opts, data_kind=data_kind(opts["data"]))
    data = load_data(opts)
    report = evaluate_generator(generator, data, seeds=seeds, samples=samples, device=device)
    used_ema = ema and state.get("generator_ema") is not None
    report.update(checkpoint=str(ckpt.resolve_path(path)), step=int(state["step"]), data=opts["data"],
                  generator="ema" if used_ema else "trained", options=opts, train_command=train_command(opts))
    return report


# Options that do not change what is trained, left out of train_command.
_OUTPUT_ONLY = {"data_kind", "threads", "checkpoint_every", "sample_every", "log_every"}


def train_command(options: dict) -> str:
    """The `fastgan train` command for a run's stored options: --data, then every
    option that differs from the data's preset."""
    preset = resolve({"data": options["data"]})
    words = ["fastgan", "train", "--data", str(options["data"])]
    for name, value in options.items():
        if name in _OUTPUT_ONLY or name == "data" or value is None or value == preset.get(name):
            continue
        words += ["--" + name.replace("_", "-"), ",".join(value) if isinstance(value, list) else str(value)]
    return " ".join(words)


def format_report(report: dict) -> str:
    """A markdown table: the overall scores, then one row per condition."""
    columns = list(report["overall"])
    for row in report["per_class"].values():
        columns += [name for name in row if name not in columns]
    lines = ["| condition | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]

    def cells(summary):
        return " | ".join(_cell(summary.get(name)) for name in columns)

    lines.append(f"| overall | {cells(report['overall'])} |")
    lines += [f"| {name} | {cells(row)} |" for name, row in report["per_class"].items()]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    mean, std = value
    if math.isinf(mean):
        return "inf"
    return f"{mean:.4f} ± {std:.4f}"


def as_json(report: dict) -> dict:
    """The report with every (mean, std) pair as {"mean": ..., "std": ...}."""

    def summary(s):
        return {name: {"mean": m, "std": sd} for name, (m, sd) in s.items()}

    out = {k: v for k, v in report.items() if k not in ("overall", "per_class")}
    out["overall"] = summary(report["overall"])
    out["per_class"] = {str(c): summary(row) for c, row in report["per_class"].items()}
    return out
