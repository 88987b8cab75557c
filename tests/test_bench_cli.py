"""`fastgan bench`: the table and the JSON at a tiny size on the CPU (the installed
console script, as a user runs it), and one-line errors for bad arguments."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastgan.cli import main
from fastgan.bench.dcgan import COLUMNS


def test_bench_prints_the_table_and_writes_the_json(tmp_path):
    exe = Path(sys.executable).with_name("fastgan")
    out = tmp_path / "sub" / "bench.json"
    proc = subprocess.run(
        [str(exe), "bench", "--device", "cpu", "--batch", "2", "--image-size", "8", "--width", "4", "--latent", "8",
         "--cond", "class", "--providers", "eager,fastgan", "--steps", "2", "--warmup", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("provider"))
    assert lines[header].split("  ")[0] == "provider"
    for column in COLUMNS:
        assert column in lines[header]
    rows = [line.split() for line in lines[header + 1:]]
    assert [r[0] for r in rows] == ["eager", "fastgan"]
    assert "DCGAN-8" in lines[0] and "class-conditional" in lines[0] and "batch 2" in lines[0]

    data = json.loads(out.read_text())
    for key in ("device", "torch", "triton", "commit", "date"):
        assert data[key], key
    assert data["config"]["cond"] == "class" and data["config"]["batch"] == 2 and data["config"]["size"] == 8
    assert [r["provider"] for r in data["records"]] == ["eager", "fastgan"]
    for row, rec in zip(rows, data["records"]):
        assert float(row[1]) == pytest.approx(rec["images_per_s"], rel=1e-3, abs=0.1)
        assert float(row[2]) == pytest.approx(rec["ms_per_step"], rel=1e-3, abs=1e-3)
        assert rec["losses_finite"] and rec["peak_memory_bytes"] is None
        assert row[-1] == "n/a"  # peak memory is not measured on a CPU
    assert data["records"][1]["backend"] in ("triton", "reference")


@pytest.mark.parametrize(
    "argv,match",
    [
        (["bench", "--providers", "eager,jax"], "argument --providers: must be a comma-separated subset of eager,compile,fastgan"),
        (["bench", "--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
        (["bench", "--image-size", "48"], "argument --image-size: must be a power of two from 8 to 256"),
        (["bench", "--batch", "0"], "argument --batch: must be a positive integer"),
        (["bench", "--warmup", "0"], "argument --warmup: must be a positive integer"),
        (["bench", "--cond", "user"], "argument --cond: invalid choice: 'user'"),
        (["bench", "--json", "out.txt"], "argument --json: must be a .json file path"),
    ],
)
def test_bad_arguments_are_one_line(argv, match, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert match in err[0], err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line(capsys):
    code = main(["bench", "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["fastgan bench: error: argument --device: 'cuda' but CUDA is not available"]


def test_bench_host_prints_the_ratio_and_the_launch_count(tmp_path):
    exe = Path(sys.executable).with_name("fastgan")
    out = tmp_path / "host.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the command sets it
    proc = subprocess.run([str(exe), "bench", "--host", "--steps", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, env=dict(env, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "fastgan / eager host time:" in text and "launches/step" in text and "us/launch" in text
    data = json.loads(out.read_text())
    host = data["host"]
    assert host["ratio_fastgan_over_eager"] == pytest.approx(host["fastgan_ms_per_step"] / host["eager_ms_per_step"])
    assert len(host["eager_samples_ms"]) == len(host["fastgan_samples_ms"]) == 2
    real = data["real_size"]
    assert real["config"]["batch"] == 256 and real["config"]["dtype"] == "bfloat16"
    assert real["launches_per_step"] == sum(real["by_kernel"].values()) > 0
    assert f"launches per step at DCGAN-64 (width 64, latent 100) unconditional, batch 256, bfloat16" in text
    assert f": {real['launches_per_step']}  (target <= 70)" in text
