"""`fastgan eval`: a checkpoint trained for a few steps in the test, scored with the
metric of its data; the scorer on known generators; one-line errors (exit status 2)."""

import functools
import json

import pytest
import torch
from PIL import Image
from torch import nn

from fastgan import metrics as M
from fastgan.cli import build_parser, main
from fastgan.cli.train import given_options
from fastgan.data import digits
from fastgan.train import evaluation, load_generator
from fastgan.train.recipes import resolve

TINY = ["--width", "8", "--latent", "4", "--batch-size", "16", "--no-progress"]


def test_eval_of_a_ring_checkpoint_matches_scoring_its_generator_by_hand(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", "ring", "--steps", "3", "--out", "ring", "--ema", "0.5", *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", "--ckpt", "ring", "--seeds", "1", "--json", "scores.json"]) == 0
    printed = capsys.readouterr().out
    assert "step 3, data ring, ema generator" in printed
    rows = [line for line in printed.splitlines() if line.startswith("| ")]
    assert rows[0] == "| condition | modes | high_quality | reverse_kl | accuracy |"
    assert [r.split(" | ")[0] for r in rows[2:]] == ["| overall"] + [f"| {c}" for c in range(8)]
    record = json.loads((tmp_path / "scores.json").read_text())
    assert record["metric"] == "modes_conditional" and record["samples"] == 2500
    assert record["command"] == "fastgan eval --ckpt ring --seeds 1" and record["commit"] is not None
    # The recorded training command trains exactly this run again.
    stored = torch.load(tmp_path / "ring" / "checkpoint.pt", weights_only=True)["config"]["run"]["options"]
    again = resolve(given_options(build_parser().parse_args(record["train_command"].split()[1:])))
    assert record["train_command"].startswith("fastgan train --data ring ") and "--steps 3" in record["train_command"]
    assert {k: v for k, v in again.items() if k != "no_progress"} == {k: v for k, v in stored.items()}

    # The same score computed here from the EMA generator: seed 0, the protocol's 2,500
    # samples with conditions cycling over the 8 modes.
    generator, _ = load_generator("ring")
    torch.manual_seed(0)
    conditions = torch.arange(2500) % 8
    with torch.no_grad():
        points = generator(torch.randn(2500, generator.latent_dim), conditions)
    expected = M.ring_coverage(points)
    nearest, good = M.nearest_mode(points, M.ring_modes(), M.RING_SIGMA)
    assert record["overall"]["modes"]["mean"] == expected.modes_covered
    assert record["overall"]["high_quality"]["mean"] == pytest.approx(expected.high_quality)
    assert record["overall"]["accuracy"]["mean"] == pytest.approx(float((good & (nearest == conditions)).double().mean()))
    assert record["overall"]["high_quality"]["std"] == 0.0  # one seed

    # --no-ema scores the trained weights, which differ from their average after 3 steps.
    assert main(["eval", "--ckpt", "ring/checkpoint.pt", "--seeds", "1", "--no-ema", "--json", "trained.json"]) == 0
    trained = json.loads((tmp_path / "trained.json").read_text())
    assert trained["generator"] == "trained" and trained["command"].endswith("--no-ema")


def test_eval_of_a_digits_checkpoint_prints_every_class(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # The real scorer trains its classifier for 60 epochs; 3 keep this test short.
    monkeypatch.setattr(M, "train_classifier", functools.partial(M.train_classifier, epochs=3))
    assert main(["train", "--steps", "2", "--out", "run", *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", "--ckpt", "run", "--seeds", "2", "--json", "digits.json"]) == 0
    printed = capsys.readouterr().out
    assert "2 seed(s) x 1797 samples against 1797 real" in printed
    assert "| condition | accuracy | fd | precision | recall | density | coverage |" in printed
    record = json.loads((tmp_path / "digits.json").read_text())
    assert record["metric"] == "conditional" and list(record["per_class"]) == [str(d) for d in range(10)]
    overall = record["overall"]
    # Two training steps draw noise, not digits: near chance, far from the real digits.
    assert overall["accuracy"]["mean"] < 0.5 and overall["coverage"]["mean"] < 0.5
    assert overall["fd"]["std"] > 0  # two noise seeds, two different sample sets


class RealDigits(nn.Module):
    """A stand-in generator that returns real digits of the class asked for (or of
    class 0 when `collapse`), with the interface of fastgan.models' generators."""

    cond_kind, cond_size, latent_dim = "label", 10, 2

    def __init__(self, collapse=False):
        super().__init__()
        data = digits()
        self.x, self.y = data[torch.arange(len(data))]
        self.collapse = collapse

    def forward(self, z, c):
        out = torch.empty(len(c), 1, 8, 8)
        for label in c.unique():
            pool = self.x[self.y == (0 if self.collapse else label)]
            mine = c == label
            out[mine] = pool[torch.randint(len(pool), (int(mine.sum()),))]
        return out


@pytest.mark.parametrize("collapse", [False, True])
def test_the_image_scorer_rewards_real_digits_and_catches_a_collapsed_generator(collapse, monkeypatch):
    monkeypatch.setattr(M, "train_classifier", functools.partial(M.train_classifier, epochs=10))
    report = evaluation.evaluate_generator(RealDigits(collapse), digits(), seeds=(0,))
    overall = report["overall"]
    if collapse:  # every class draws zeros: accuracy of one class in ten
        assert overall["accuracy"][0] < 0.15 and overall["coverage"][0] < 0.3
        assert report["per_class"]["0"]["accuracy"][0] > 0.9 and report["per_class"]["7"]["accuracy"][0] < 0.1
    else:  # resampled real digits: the classifier's own accuracy, recall and coverage near 1
        assert overall["accuracy"][0] > 0.9 and overall["recall"][0] > 0.8 and overall["coverage"][0] > 0.8


def one_line_error(argv, capsys, match):
    code = main(argv)
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("fastgan: read ")]
    assert code == 2, err
    assert len(err) == 1, err
    assert match in err[0], err[0]


@pytest.mark.parametrize(
    "argv,match",
    [
        (["eval"], "fastgan eval: error: give --ckpt"),
        (["eval", "--ckpt", "nowhere"], "argument --ckpt: checkpoint 'nowhere' does not exist"),
        (["eval", "--ckpt", "x", "--seeds", "0"], "argument --seeds: must be a positive integer"),
        (["eval", "--ckpt", "x", "--device", "tpu"], "argument --device: must be auto, cpu, cuda or cuda:N"),
        (["eval", "--ckpt", "x", "recsys"], "argument --ckpt: scores a checkpoint; leave it out for recsys"),
        (["eval", "recsys", "--data", "no/such.csv"], "fastgan eval recsys: error: argument --data: source: no such file"),
        (["eval", "recsys", "--seeds", "-1"], "argument --seeds: must be an integer >= 0"),
        (["eval", "recsys", "--models", "BPR"], "argument --models: invalid choice: 'BPR'"),
        (["eval", "recsys", "--epochs", "0"], "argument --epochs: must be a positive integer"),
    ],
)
def test_bad_input_is_one_line(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(argv, capsys, match)


def test_checkpoints_it_cannot_score_are_one_line_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    one_line_error(["eval", "--ckpt", "junk.pt"], capsys, "is not a readable checkpoint")
    (tmp_path / "imgs").mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(tmp_path / "imgs" / f"{i}.png")
    assert main(["train", "--data", "imgs", "--size", "8", "--steps", "1", "--out", "faces", *TINY]) == 0
    capsys.readouterr()
    one_line_error(["eval", "--ckpt", "faces"], capsys, "scores image generators conditioned on class labels")


def test_eval_recsys_runs_the_recommendation_benchmark(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    from recsys_data import clustered_interactions

    users, items = clustered_interactions(n_users=40, n_items=20, per_user=6).nonzero()
    (tmp_path / "likes.csv").write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in zip(users, items)))
    argv = ["eval", "recsys", "--data", "likes.csv", "--models", "EASE", "TopPop", "--seeds", "0", "--json", "r.json"]
    assert main(argv) == 0
    assert "NDCG@20" in capsys.readouterr().out
    record = json.loads((tmp_path / "r.json").read_text())
    assert set(record["summary"]) == {"EASE", "TopPop"}
    assert record["command"] == "fastgan eval recsys --data likes.csv --seeds 0 --models EASE TopPop --json r.json"
