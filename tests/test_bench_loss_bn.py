"""The CPU side of benchmarks/bench_loss_bn.py: a dry run through the Triton
interpreter writes a complete JSON record; shapes and the target summary are right.
The timings themselves need a GPU."""

import importlib.util
import json
import math
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_loss_bn", ROOT / "benchmarks" / "bench_loss_bn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_writes_a_complete_record(bench, tmp_path):
    path = bench.main([
        "--device", "cpu", "--sizes", "256", "1024", "--dtypes", "float32", "--kinds", "nonsaturating", "hinge",
        "--copy-elements", "4096", "--out", str(tmp_path),
    ])
    assert path.parent == tmp_path and path.name.startswith("loss_bn_cpu")
    data = json.loads(path.read_text())
    for key in ("device", "torch", "triton", "commit", "date", "copy_GBps", "records", "summary"):
        assert data[key] is not None, key
    assert len(data["commit"].removesuffix("+dirty")) == 40 or data["commit"] == "unknown"
    loss = [r for r in data["records"] if r["op"] == "discriminator_loss"]
    bn = [r for r in data["records"] if r["op"] == "batch_norm_act"]
    assert {(r["case"], r["elements"]) for r in loss} == {(k, 2 * n) for k in ("nonsaturating", "hinge") for n in (256, 1024)}
    assert sorted(r["elements"] for r in bn) == [256, 256, 1024, 1024]
    for r in data["records"]:
        assert r["eager_ms"] > 0 and r["fastgan_ms"] > 0
        assert math.isclose(r["speedup"], r["eager_ms"] / r["fastgan_ms"])
    for r in loss:
        assert math.isclose(r["fraction_of_copy"], r["fastgan_GBps"] / data["copy_GBps"])
    assert set(data["summary"]) >= {"loss_min_speedup_up_to_1M", "bn_min_speedup", "bn_geomean_speedup"}


def test_batch_norm_shapes_have_the_requested_sizes(bench):
    for n in bench.SIZES:
        shape = bench.bn_shape(n)
        assert math.prod(shape) == n and shape[1] == bench.BN_CHANNELS and shape[2] == shape[3] <= 32
    assert bench.SIZES[0] == 256 and bench.SIZES[-1] == 2**24


def test_summary_judges_the_targets(bench):
    records = [
        dict(op="discriminator_loss", elements=2 * 2**20, speedup=3.5, fraction_of_copy=0.5),
        dict(op="discriminator_loss", elements=2 * 2**24, speedup=1.1, fraction_of_copy=0.85),
        dict(op="batch_norm_act", elements=256, speedup=1.2),
        dict(op="batch_norm_act", elements=2**24, speedup=3.0),
    ]
    s = bench.summary(records)
    assert s["loss_min_speedup_up_to_1M"] == 3.5 and s["loss_speedup_target_3x_met"]
    assert s["loss_min_fraction_of_copy_at_16M"] == 0.85 and s["loss_bandwidth_target_80pct_met"]
    assert s["bn_min_speedup"] == 1.2 and not s["bn_speedup_target_1.5x_met"]
    assert math.isclose(s["bn_geomean_speedup"], math.sqrt(3.6))
