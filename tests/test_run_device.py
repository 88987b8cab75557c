"""benchmarks/run_device.sh on a CPU: its stage plan fits a device lease, and the
correctness stage's JSON (benchmarks/device_run.py) reports what ran, from pytest's
junit XML or, when a stage was killed before pytest wrote it, from the -v log."""

import os
import pathlib
import re
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


def test_stage_limits_fit_one_device_call_with_the_first_figures_in_five_minutes():
    proc = _plan()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    total, first = map(int, re.search(r"total (\d+)s .* by (\d+)s", proc.stdout).groups())
    stages = [line.split()[0] for line in proc.stdout.splitlines()[1:-1]]
    assert stages == ["setup", "correctness", "step-bf16-b256", "step-fp32-b64", "layers-conv", "layers-loss-bn",
                      "profile"]
    assert total <= CALL_LIMIT_S - 30 and first <= 300
    # A stage limit raised past the budget is refused before anything runs.
    assert _plan(STEP_BF16_S="400").returncode == 1
    assert _plan(CORRECTNESS_S="150").returncode == 1  # the step would end after 300 s
    only = _plan("correctness", "step")
    assert only.returncode == 0 and "layers" not in only.stdout and "profile" not in only.stdout


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.kernels.test_gpu_sweep" name="test_every_shipped_tile[a]" time="1.5"/>
<testcase classname="tests.kernels.test_gpu_sweep" name="test_every_shipped_tile[b]" time="2.0">
<failure message="relative error">boom</failure></testcase>
<testcase classname="tests.kernels.test_loss_bn_gpu" name="test_loss_sweep[c]" time="0.1">
<skipped message="x"/></testcase>
<testcase classname="tests.kernels.test_loss_bn_gpu" name="test_loss_sweep[d]" time="0.2"/>
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
