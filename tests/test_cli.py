"""The `fastgan` command: a short end-to-end train / sample / resume, SIGTERM mid-run,
and one-line errors (exit status 2, no traceback) for bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from fastgan.cli import main

TINY = ["--width", "4", "--latent", "4", "--batch-size", "16", "--no-progress"]


def fastgan_cmd(*args, cwd, timeout=300):
    # The installed console script, as a user runs it.
    exe = Path(sys.executable).with_name("fastgan")
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_train_sample_resume_end_to_end(tmp_path):
    run = fastgan_cmd("train", "--steps", 4, "--sample-every", 2, "--checkpoint-every", 2, "--log-every", 1,
                      "--out", "run", *TINY, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "step 4" in run.stdout
    out = tmp_path / "run"
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "metrics.jsonl", "samples.png", "losses.png", "samples"}
    assert {p.name for p in (out / "samples").iterdir()} == {"step_000002.png", "step_000004.png"}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all({"d_loss", "g_loss", "steps_per_s"} <= r.keys() for r in records)
    grid = Image.open(out / "samples.png")
    # One row per digit: 10 rows of 8x8 images enlarged 4x with 2-pixel gaps.
    assert grid.height == 2 + 10 * (32 + 2)
    assert Image.open(out / "losses.png").width > 300
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and state["config"]["run"]["options"]["data"] == "digits"
    assert state["config"]["run"]["cond_names"] == [str(i) for i in range(10)]
    # The digits preset's Adam betas (docs/quality.md, Digits) reach both optimizers.
    for optimizer in ("g_optimizer", "d_optimizer"):
        assert tuple(state[optimizer]["param_groups"][0]["betas"]) == (0.0, 0.99)

    sample = fastgan_cmd("sample", "--ckpt", "run", "--cond", 3, "--n", 5, "--out", "threes.png", cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr
    image = Image.open(tmp_path / "threes.png")
    assert image.size == (2 + 3 * 34, 2 + 2 * 34)  # 5 samples on a 3x2 grid

    again = fastgan_cmd("train", "--resume", "run", "--steps", 6, "--log-every", 2, "--no-progress", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 6
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 6]  # the new --log-every 2 applies after resume


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path):
    exe = Path(sys.executable).with_name("fastgan")
    proc = subprocess.Popen(
        [str(exe), "train", "--steps", "100000", "--checkpoint-every", "100000", "--sample-every", "100000",
         "--log-every", "5", "--out", "run", *TINY],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 240
    while not (metrics.exists() and metrics.stat().st_size > 0):  # training is under way
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and "stopped by SIGTERM" in stderr
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert 5 <= state["step"] < 100000
    assert f"at step {state['step']}" in stderr


def one_line_error(argv, capsys, match):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if not line.startswith("fastgan: read ")]
    assert code == 2, err
    assert len(err) == 1, err
    assert match in err[0], err[0]
    return err[0]


@pytest.mark.parametrize(
    "argv,match",
    [
        (["train", "--loss", "bce"], "argument --loss: invalid choice: 'bce'"),
        (["train", "--size", "12"], "argument --size: must be a power of two from 8 to 256, got '12'"),
        (["train", "--size", "16"], "argument --size: the digits are 8x8 images"),
        (["train", "--steps", "0"], "argument --steps: must be a positive integer"),
        (["train", "--ema", "1.5"], "argument --ema: must be in [0, 1)"),
        (["train", "--batch-size", "10", "--accumulate", "4"], "batch_size 10 must split evenly"),
        (["train", "--device", "tpu"], "argument --device: must be auto, cpu, cuda or cuda:N"),
        (["train", "--data", "no/such/folder"], "image folder 'no/such/folder' does not exist"),
        (["train", "--columns", "a"], "argument --columns: applies to an image folder, not to --data digits"),
        (["train", "--data", "ring", "--size", "32"], "argument --size: applies to images, not to the 2-D points"),
        (["train", "--data", ".", "--columns", "a"], "argument --columns: needs --attributes"),
        (["train", "--resume", "no/such/run"], "checkpoint 'no/such/run' does not exist"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["sample", "--ckpt", "nowhere", "--out", "x.png"], "argument --ckpt: checkpoint 'nowhere' does not exist"),
        (["sample", "--ckpt", "nowhere", "--out", "x.jpg"], "argument --out: must be a .png file"),
    ],
)
def test_bad_input_is_one_line(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(argv, capsys, match)


def test_bad_folder_data_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8), (i, i, i)).save(tmp_path / "imgs" / f"{i}.png")
    (tmp_path / "bad.csv").write_text("file,smile\n0.png,1\n1.png,maybe\n")
    (tmp_path / "missing.csv").write_text("file,smile\n0.png,1\n7.png,0\n")
    one_line_error(["train", "--data", "imgs", "--attributes", "bad.csv", "--size", "8"], capsys,
                   "line 3, column 'smile': 'maybe' is not a number")
    one_line_error(["train", "--data", "imgs", "--attributes", "missing.csv", "--size", "8"], capsys,
                   "names 1 file(s) missing")
    one_line_error(["train", "--data", "imgs", "--attributes", "bad.csv", "--columns", "age", "--size", "8"], capsys,
                   "has no column(s) ['age']")
    one_line_error(["train", "--data", "imgs", "--size", "8", "--cond", "label"], capsys, "has no condition to use as 'label'")


def test_sample_and_resume_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--steps", "1", "--out", "run", *TINY]) == 0
    capsys.readouterr()
    one_line_error(["sample", "--ckpt", "run", "--out", "x.png"], capsys, "conditioned on a label (10 classes); give --cond")
    one_line_error(["sample", "--ckpt", "run", "--cond", "12", "--out", "x.png"], capsys, "out of range: the model knows label ids 0..9")
    one_line_error(["sample", "--ckpt", "run", "--cond", "seven", "--out", "x.png"], capsys, "is not a label id")
    one_line_error(["train", "--resume", "run", "--lr", "0.1"], capsys, "only --checkpoint-every")
    one_line_error(["train", "--out", "run", *TINY], capsys, "already holds a run; continue it with --resume run")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    one_line_error(["sample", "--ckpt", "junk.pt", "--out", "x.png"], capsys, "is not a readable checkpoint")
    assert main(["sample", "--ckpt", "run", "--cond", "7", "--n", "4", "--out", "sevens.png"]) == 0
    assert Image.open(tmp_path / "sevens.png").size == (2 + 2 * 34, 2 + 2 * 34)


def test_attribute_runs_and_sampling_by_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    rows = ["file,smiling,glasses"]
    for i in range(6):
        Image.new("RGB", (10, 10), (40 * i, 0, 0)).save(tmp_path / "imgs" / f"{i}.png")
        rows.append(f"{i}.png,{i % 2},{(i // 2) % 2}")
    (tmp_path / "attrs.csv").write_text("\n".join(rows) + "\n")
    assert main(["train", "--data", "imgs", "--attributes", "attrs.csv", "--size", "8", "--steps", "2", "--out", "run",
                 "--width", "4", "--latent", "4", "--batch-size", "4", "--no-progress"]) == 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["config"]["generator"]["cond_kind"] == "attributes" and state["config"]["run"]["cond_names"] == ["smiling", "glasses"]
    assert main(["sample", "--ckpt", "run", "--cond", "glasses=1", "--n", "2", "--out", "g.png"]) == 0
    assert main(["sample", "--ckpt", "run", "--cond", "1,0.5", "--n", "2", "--out", "h.png"]) == 0
    capsys.readouterr()
    one_line_error(["sample", "--ckpt", "run", "--cond", "hat=1", "--out", "x.png"], capsys, "unknown attribute 'hat'")
    one_line_error(["sample", "--ckpt", "run", "--cond", "1,0,1", "--out", "x.png"], capsys, "has 3 value(s); the model takes 2 attributes")


def test_parse_condition_for_each_kind():
    from fastgan.cli import UsageError
    from fastgan.cli.sample import parse_condition

    assert parse_condition("7", "user", 100, None).tolist() == [7]
    assert parse_condition("3", "label", 10, [str(i) for i in range(10)]).tolist() == [3]
    assert parse_condition("cat", "label", 2, ["dog", "cat"]).tolist() == [1]
    assert parse_condition("1, 0, 0.5", "attributes", 3, None).tolist() == [[1.0, 0.0, 0.5]]
    assert parse_condition("b=1", "attributes", 3, ["a", "b", "c"]).tolist() == [[0.0, 1.0, 0.0]]
    assert parse_condition(None, "none", 0, None) is None
    for text, kind, size, match in [
        ("100", "user", 100, "the model knows user ids 0..99"),
        ("-1", "user", 100, "out of range"),
        ("1,x", "attributes", 2, "'x' is not a number"),
        ("1,nan", "attributes", 2, "is not finite"),
        ("3", "none", 0, "this model is unconditional"),
    ]:
        with pytest.raises(UsageError, match=match):
            parse_condition(text, kind, size, None)


def test_cuda_graph_option_is_refused_without_cuda(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(["train", "--cuda-graph", "--device", "cpu", *TINY], capsys,
                   "argument --cuda-graph: CUDA graphs need a CUDA device (--device cpu); leave out --cuda-graph")
    assert not (tmp_path / "runs").exists()  # refused before anything was written
    assert main(["train", "--steps", "1", "--out", "run", "--no-cuda-graph", *TINY]) == 0
    capsys.readouterr()
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["config"]["run"]["options"]["cuda_graph"] is False
    # --cuda-graph may be changed on resume (like --device), and is checked there too.
    one_line_error(["train", "--resume", "run", "--cuda-graph", "--device", "cpu"], capsys,
                   "argument --cuda-graph: CUDA graphs need a CUDA device")
