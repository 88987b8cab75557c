"""fastgan.bench: the FLOP counter against hand counts, the published DCGAN-64 figure
and torch.utils.flop_counter; the DCGAN layer list; timing, ratios, summary, the table and
the result record."""

import datetime
import json
import pathlib

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dcgan import layer_shapes
from fastgan.bench import dcgan, measure
from fastgan.bench.flops import count_flops

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_flop_count_of_a_small_model_matches_a_hand_count():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, 1, 1), nn.ReLU(), nn.ConvTranspose2d(4, 2, 4, 2, 1), nn.Flatten(), nn.Linear(512, 5),
    )
    x = torch.randn(2, 3, 8, 8)
    with count_flops(model) as count:
        model(x).sum().backward()
    # conv: 2 images x 8*8 outputs x 4 out x 3 in x 3*3 taps = 13,824 MACs
    # convT: 2 x 8*8 inputs x 4 in x 2 out x 4*4 taps = 16,384 MACs
    # linear: 2 x 512 x 5 = 5,120 MACs
    assert count.forward == 2 * (13_824 + 16_384 + 5_120)
    # x needs no gradient: the conv computes only its weight gradient; the others both.
    assert count.backward == 2 * (13_824 + 2 * 16_384 + 2 * 5_120)
    assert [r["type"] for r in count.layers] == ["Conv2d", "ConvTranspose2d", "Linear"]


@pytest.mark.parametrize("cond", ["none", "class"])
def test_step_flops_match_torch_flop_counter(cond):
    """torch's own counter sees the aten convolutions / matmuls the step dispatches,
    backward included: an independent count of the same executed work."""
    cfg = dcgan.StepConfig(batch=3, size=16, width=4, latent=7, cond=cond, classes=5)
    ours = dcgan.step_flops(cfg)
    G, D = dcgan.make_models(cfg)
    step = dcgan.GANStep("eager", G, D, cfg)
    real, c, z = dcgan.make_inputs(cfg, sets=1)[0]
    with FlopCounterMode(display=False) as theirs:
        step(real, c, z)
    assert ours["total"] == theirs.get_total_flops()
    assert ours["per_image"] == ours["total"] / 3


def test_dcgan64_step_is_2_48_gflop_per_image():
    """The published DCGAN-64 figure: about 2.48 GFLOP per image for D on real + D on fake + G through D
    with D's weight gradients."""
    flops = dcgan.step_flops(dcgan.StepConfig(batch=1))
    assert flops["per_image"] / 1e9 == pytest.approx(2.48, abs=0.005)


def test_layer_specs_are_the_dcgan64_layers_the_kernel_tests_use():
    specs = dcgan.layer_specs(64, 64, 100, 3)
    ours = [(s["name"], s["transposed"], (2, s["c_in"], s["hw"], s["hw"]),
             (s["c_in"], s["c_out"], 4, 4) if s["transposed"] else (s["c_out"], s["c_in"], 4, 4), s["stride"], s["padding"])
            for s in specs]
    assert ours == layer_shapes(batch=2)
    assert [s["bn"] for s in specs] == [True] * 4 + [False] + [False] + [True] * 3 + [False]


def test_plain_dcgan64_has_the_pytorch_examples_parameters():
    import dcgan as example

    G, D = dcgan.PlainGenerator(), dcgan.PlainDiscriminator()
    shapes = lambda m: [tuple(p.shape) for p in m.parameters()]  # noqa: E731
    assert shapes(G) == shapes(example.generator())
    assert shapes(D) == shapes(example.discriminator())


def test_time_ms_takes_the_median_of_the_timed_calls():
    calls = []
    timing = measure.time_ms(lambda: calls.append(1), "cpu", warmup=2, reps=5)
    assert len(calls) == 7 and len(timing.samples_ms) == 5
    assert measure.Timing([1.0, 5.0, 2.0]).median_ms == 2.0
    assert measure.Timing([1.0, 3.0, 2.0]).spread == 1.0
    with pytest.raises(ValueError, match="reps"):
        measure.time_ms(lambda: None, "cpu", reps=0)


def test_ceilings_and_memory_on_cpu():
    mm = measure.matmul_tflops("cpu", n=64, reps=2)
    assert mm["dtype"] == "float32" and mm["n"] == 64 and mm["tflops"] > 0
    assert measure.copy_gbytes_per_s("cpu", elements=4096, reps=2) > 0
    assert measure.peak_memory_bytes("cpu") is None  # not counted on a CPU: never invented


def _record(provider, ms, peak=None):
    return {"provider": provider, "ms_per_step": ms, "peak_memory_bytes": peak}


def test_ratios_and_summary():
    records = dcgan.add_ratios([_record("eager", 10.0, 1000), _record("compile", 6.0, 900), _record("fastgan", 4.0, 600)])
    fast = records[2]
    assert fast["vs_eager"] == 2.5 and fast["vs_compile"] == 1.5 and fast["peak_memory_vs_eager"] == 0.6
    assert records[0]["vs_compile"] == 0.6
    s = dcgan.summary(records)
    assert s["target_2x_eager_met"] and s["target_1.25x_compile_met"] and s["target_0.7x_memory_met"]
    slow = dcgan.add_ratios([_record("eager", 10.0), _record("fastgan", 8.0)])
    assert slow[1]["vs_compile"] is None and slow[1]["peak_memory_vs_eager"] is None
    s = dcgan.summary(slow)
    assert s["target_2x_eager_met"] is False and "target_1.25x_compile_met" not in s


def test_result_path_and_environment(monkeypatch, tmp_path):
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    monkeypatch.setenv("OUT", str(tmp_path))
    path = measure.result_path("gan_step", "NVIDIA H100 80GB HBM3", now)
    assert path == tmp_path / "gan_step_nvidia-h100-80gb-hbm3_20260102T030405Z.json"
    monkeypatch.delenv("OUT")
    assert measure.result_path("x", "cpu", now).parent == ROOT / "benchmarks" / "results"
    env = measure.environment("cpu", now)
    assert env["date"] == "2026-01-02T03:04:05+00:00" and env["torch"] == torch.__version__
    assert env["commit"] == "unknown" or len(env["commit"].split("+")[0]) == 40
    assert env["device"].startswith("cpu")


def test_run_records_round_trip_and_table(tmp_path):
    cfg = dcgan.StepConfig(batch=2, size=8, width=4, latent=5)
    result = dcgan.run(cfg, ["eager", "fastgan"], warmup=1, steps=2).as_dict()
    path = measure.write_json(tmp_path / "r.json", result)
    back = json.loads(path.read_text())
    assert back == json.loads(json.dumps(result))
    for key in ("device", "torch", "triton", "commit", "date", "config", "flops_per_step", "matmul", "records"):
        assert back[key] is not None, key
    eager, fast = back["records"]
    assert fast["vs_eager"] == pytest.approx(eager["ms_per_step"] / fast["ms_per_step"])
    assert fast["mfu"] == pytest.approx(back["flops_per_step"]["total"] / (fast["ms_per_step"] * 1e-3) / 1e12
                                        / back["matmul"]["tflops"])
    assert fast["images_per_s"] == pytest.approx(2 / (fast["ms_per_step"] * 1e-3))
    assert len(fast["samples_ms"]) == 2 and fast["losses_finite"]
    table = dcgan.format_table(back)
    header = table.splitlines()[4].split()
    assert header[0] == "provider" and "MFU" in header
    rows = {line.split()[0]: line.split() for line in table.splitlines()[5:]}
    assert set(rows) == {"eager", "fastgan"}
    assert rows["eager"][-1] == "n/a" and rows["fastgan"][4] == "n/a"  # no peak memory on a CPU; no compile row


def test_run_hands_over_the_result_after_every_provider():
    """What `fastgan bench --json` rewrites its file from: a run stopped at a time limit
    keeps the rows measured so far, the skipped / failed ones included."""
    cfg = dcgan.StepConfig(batch=2, size=8, width=4, latent=5)
    seen = []
    final = dcgan.run(cfg, ["eager", "fastgan-cuda-graph", "fastgan"], warmup=1, steps=2,
                      on_record=lambda so_far: seen.append(so_far.as_dict()))
    assert [[r["provider"] for r in s["records"]] for s in seen] == [
        ["eager"], ["eager", "fastgan-cuda-graph"], ["eager", "fastgan-cuda-graph", "fastgan"]]
    assert seen[1]["records"][1]["skipped"] and seen[1]["records"][1]["ms_per_step"] is None
    assert seen[-1] == final.as_dict()
    fast = seen[-1]["records"][2]
    assert fast["vs_eager"] == pytest.approx(seen[0]["records"][0]["ms_per_step"] / fast["ms_per_step"])


def test_bad_configs_name_the_argument():
    with pytest.raises(ValueError, match="size"):
        dcgan.StepConfig(size=48)
    with pytest.raises(ValueError, match="dtype"):
        dcgan.StepConfig(dtype="float16")
    with pytest.raises(ValueError, match="providers"):
        dcgan.run(dcgan.StepConfig(batch=1, size=8, width=2), ["eager", "jax"])
    with pytest.raises(ValueError, match="warmup"):
        dcgan.run(dcgan.StepConfig(batch=1, size=8, width=2), ["eager"], warmup=0)
