"""benchmarks/run_device.sh on a CPU: its stage plan fits a device lease, and the
correctness stage's JSON (benchmarks/device_run.py) reports what ran, from pytest's
junit XML or, when a stage was killed before pytest wrote it, from the -v log."""

import os
import pathlib
import json
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "run_device.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))

import device_run  # noqa: E402

# A device call runs at most 600 s; the lease is 15 minutes, start-up included.
CALL_LIMIT_S = 600


def _plan(*args, **env):
    return subprocess.run(["bash", str(SCRIPT), "--plan", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


CALL_1 = ("correctness", "warm")
CALL_2 = ("step", "layers", "profile")


def _limits(proc):
    return tuple(map(int, re.search(r"total (\d+)s .* by (\d+)s", proc.stdout).groups()))


def test_each_of_the_two_calls_fits_one_device_call_with_first_figures_in_five_minutes():
    first = _plan(*CALL_1, EXPORT_CACHE="1")
    second = _plan(*CALL_2)
    for proc in (first, second):
        assert proc.returncode == 0, proc.stdout + proc.stderr
        total, first_figures = _limits(proc)
        assert total <= CALL_LIMIT_S - 30 and first_figures <= 300
    assert [line.split()[0] for line in first.stdout.splitlines()[1:-1]] == ["setup", "correctness", "warm", "export"]
    assert [line.split()[0] for line in second.stdout.splitlines()[1:-1]] == [
        "setup", "step-bf16-b256", "step-fp32-b64", "layers-conv", "layers-loss-bn", "profile"]
    # warm runs beside correctness: it adds nothing while it ends no later.
    assert _limits(_plan("correctness", "warm")) == _limits(_plan("correctness"))
    assert _limits(_plan("correctness", "warm", WARM_S="300"))[0] == _limits(_plan("correctness"))[0] + 75


def test_limits_past_the_budget_are_refused_before_anything_runs():
    everything = _plan()
    assert everything.returncode == 1 and "two calls" in everything.stdout
    assert _plan(*CALL_2, STEP_BF16_S="400").returncode == 1
    assert _plan(*CALL_1, CORRECTNESS_S="300").returncode == 1  # first figures after 300 s
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OUT": "/nonexistent/never-made"})
    assert proc.returncode == 2 and "exceed the budget" in proc.stderr


FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
exit 0
"""


def test_the_two_calls_hand_the_compile_cache_from_the_first_to_the_second(tmp_path):
    """The script's own logic with every python command stubbed (it needs a GPU for the
    real ones): warm queues every timed benchmark's command, the first call packs the
    compile cache without intermediate IR, the second unpacks it and runs the timed
    stages in order, each with its JSON under $OUT."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    cache = tmp_path / "cache-root"
    kernel = cache / "triton" / "ABC" / "kernel.cubin"
    kernel.parent.mkdir(parents=True)
    kernel.write_bytes(os.urandom(50_000))
    (kernel.parent / "kernel.llir").write_text("; IR a cache hit never reads")
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PYTHON": str(fake), "CALLS": str(calls), "CACHE_ROOT": str(cache)}

    def call(groups, out, **extra):
        proc = subprocess.run(["bash", str(SCRIPT), *groups], capture_output=True, text=True, timeout=120,
                              env={**env, "OUT": str(out), **extra})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lines = calls.read_text().splitlines()
        calls.unlink()
        return proc, lines, [json.loads(line) for line in (out / "stages.jsonl").read_text().splitlines()]

    _, lines, stages = call(CALL_1, tmp_path / "out1", EXPORT_CACHE="1")
    assert [s["stage"] for s in stages] == ["correctness", "warm", "export"] and all(s["rc"] == 0 for s in stages)
    warm = [line for line in lines if "--steps 1 --warmup 1" in line or "warm-layers" in line]
    assert any("bfloat16 --batch 256 --providers fastgan,compile,compile-reduce-overhead" in w for w in warm)
    assert any("float32 --batch 64 --providers fastgan,compile" in w for w in warm)
    assert any("profile_step.py" in w for w in warm) and any("bench_conv_layers.py" in w for w in warm)
    assert any("bench_loss_bn.py" in w for w in warm)
    pytest_line = next(line for line in lines if line.startswith("-m pytest"))
    assert "-m gpu tests/test_cuda_graph.py tests/test_bench_graph_providers.py" in pytest_line
    parts = sorted((tmp_path / "out1").glob("compile-cache.tar.xz.part*"))
    assert parts and len(list((tmp_path / "out1").iterdir())) <= 8

    carried = tmp_path / "carried"
    carried.mkdir()
    for part in parts:
        (carried / part.name).write_bytes(part.read_bytes())
    cubin = kernel.read_bytes()
    shutil.rmtree(cache)
    proc, lines, stages = call(CALL_2, tmp_path / "out2", CACHE_IN=str(carried))
    assert kernel.read_bytes() == cubin and not (kernel.parent / "kernel.llir").exists()
    assert "compile cache unpacked (1 files)" in proc.stdout
    assert [s["stage"] for s in stages] == ["step-bf16-b256", "step-fp32-b64", "layers-conv", "layers-loss-bn",
                                            "profile"]
    bf16 = next(line for line in lines if "--dtype bfloat16 --batch 256 --providers eager," in line)
    assert "eager,fastgan,fastgan-cuda-graph,compile,compile-reduce-overhead --steps 10" in bf16
    assert bf16.endswith(str(tmp_path / "out2" / "gan_step_bf16_b256.json"))
    assert not any("-m pytest" in line for line in lines)


def test_launch_fits_the_first_call_and_writes_its_json_under_out(tmp_path):
    """The launch-overhead check (benchmarks/launch_overhead.py) runs after correctness in
    the first call, within its budget, its JSON under $OUT; it does not fit the second."""
    plan = _plan(*CALL_1, "launch", EXPORT_CACHE="1")
    assert plan.returncode == 0, plan.stdout
    assert [line.split()[0] for line in plan.stdout.splitlines()[1:-1]] == [
        "setup", "correctness", "warm", "launch", "export"]
    assert _limits(plan)[0] == _limits(_plan(*CALL_1, EXPORT_CACHE="1"))[0] + 65 <= CALL_LIMIT_S - 30
    assert _plan(*CALL_2, "launch").returncode == 1
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    calls, out = tmp_path / "calls.txt", tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), "launch"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": str(fake), "CALLS": str(calls), "OUT": str(out),
                               "CACHE_ROOT": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = calls.read_text().splitlines()
    assert f"benchmarks/launch_overhead.py --json {out / 'launch_overhead.json'}" in lines
    stages = [json.loads(line) for line in (out / "stages.jsonl").read_text().splitlines()]
    assert [s["stage"] for s in stages] == ["launch"] and stages[0]["rc"] == 0


def test_tune_compiles_every_layer_beside_correctness_then_times_alone(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    plan = _plan("correctness", "tune", CORRECTNESS_S="60", TUNE_COMPILE_S="90", TUNE_S="70")
    assert plan.returncode == 0 and "tune-compile" in plan.stdout and "(beside correctness)" in plan.stdout
    # correctness 65 s, tune-compile 95 s beside it (30 s more), then tune 75 s.
    assert _limits(plan)[0] == _limits(_plan("correctness", CORRECTNESS_S="60"))[0] + 30 + 75
    proc = subprocess.run(["bash", str(SCRIPT), "correctness", "tune"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": str(fake), "CALLS": str(calls), "OUT": str(tmp_path / "out"),
                               "CACHE_ROOT": str(tmp_path / "cache"), "CORRECTNESS_S": "60"})
    lines = calls.read_text().splitlines()
    compiles = [line for line in lines if "tune_conv_tiles.py --compile-only" in line]
    assert sorted(line.split()[-1] for line in compiles) == sorted(
        ["G0", "G1", "G2", "G3", "G4", "D0", "D1", "D2", "D3", "D4"])
    timed = [i for i, line in enumerate(lines) if line == "benchmarks/tune_conv_tiles.py"]
    assert len(timed) == 1 and timed[0] > lines.index(next(line for line in lines if line.startswith("-m pytest")))
    stages = [json.loads(line)["stage"] for line in (tmp_path / "out" / "stages.jsonl").read_text().splitlines()]
    assert stages == ["correctness", "warm", "tune"], proc.stdout


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.kernels.test_gpu_sweep" name="test_every_shipped_tile[a]" time="1.5"/>
<testcase classname="tests.kernels.test_gpu_sweep" name="test_every_shipped_tile[b]" time="2.0">
<failure message="relative error">boom</failure></testcase>
<testcase classname="tests.kernels.test_loss_bn_gpu" name="test_loss_sweep[c]" time="0.1">
<skipped message="x"/></testcase>
<testcase classname="tests.kernels.test_loss_bn_gpu" name="test_loss_sweep[d]" time="0.2">
<properties><property name="eager_ms_per_step" value="9.5"/></properties></testcase>
<testcase time="0.000"/>
</testsuite></testsuites>
"""

LOG = """collecting ...
[gw0] [ 10%] PASSED tests/kernels/test_gpu_sweep.py::test_every_shipped_tile[a]
[gw3] [ 20%] FAILED tests/kernels/test_gpu_sweep.py::test_every_shipped_tile[b]
tests/kernels/test_loss_bn_gpu.py::test_loss_sweep[c] SKIPPED (needs a CUDA device)     [ 30%]
tests/kernels/test_loss_bn_gpu.py::test_loss_sweep[d] PASSED                           [ 40%]
tests/kernels/test_loss_bn_gpu.py::test_loss_sweep[e] ERROR                            [ 50%]
"""


def test_correctness_json_from_junit(tmp_path):
    """The junit report pytest writes, also when SIGINT stopped it (the test it was
    running is left as a bare <testcase/>, not counted)."""
    xml = tmp_path / "c.xml"
    xml.write_text(JUNIT)
    result = device_run.correctness(str(xml), str(tmp_path / "missing.log"))
    assert result["source"] == "junit"
    assert result["counts"] == {"passed": 2, "failure": 1, "error": 0, "skipped": 1}
    assert result["cases"][1] == {"test": "tests.kernels.test_gpu_sweep::test_every_shipped_tile[b]",
                                  "outcome": "failure", "seconds": 2.0}
    assert result["cases"][3]["properties"] == {"eager_ms_per_step": "9.5"}  # record_property survives
    assert "properties" not in result["cases"][0]


def test_correctness_json_from_the_log_when_the_xml_is_missing_or_cut(tmp_path):
    log = tmp_path / "c.log"
    log.write_text(LOG)
    cut = tmp_path / "cut.xml"
    cut.write_text(JUNIT[:200])
    for xml in (tmp_path / "missing.xml", cut):
        result = device_run.correctness(str(xml), str(log))
        assert result["source"] == "log"
        assert result["counts"] == {"passed": 2, "failure": 1, "error": 1, "skipped": 1}
    empty = device_run.correctness(str(tmp_path / "missing.xml"), str(tmp_path / "missing.log"))
    assert empty["counts"] == {"passed": 0, "failure": 0, "error": 0, "skipped": 0}
