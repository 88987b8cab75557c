"""The CPU-side logic of the device scripts benchmarks/bench_conv_layers.py and
benchmarks/tune_conv_tiles.py (their measurements need a GPU): FLOP counts, result
records and paths, tile candidates and the config table they write."""

import datetime
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_conv_layers as B  # noqa: E402
import tune_conv_tiles as T  # noqa: E402
from dcgan import layer_shapes  # noqa: E402
from fastgan.kernels import _tiles  # noqa: E402


@pytest.mark.parametrize("layer", layer_shapes(batch=3), ids=[s[0] for s in layer_shapes(batch=3)])
def test_useful_flops_match_a_count_by_convolution_of_ones(layer):
    """Convolving all-ones tensors counts, per output channel, the products that touch
    real data: an independent count of the useful multiply-adds."""
    name, transposed, x_shape, w_shape, stride, padding = layer
    c_in, c_out = x_shape[1], (w_shape[1] if transposed else w_shape[0])
    ones = torch.ones(x_shape, dtype=torch.float64)
    w = torch.ones(*((c_in, 1) if transposed else (1, c_in)), *w_shape[2:], dtype=torch.float64)
    conv = F.conv_transpose2d if transposed else F.conv2d
    macs = conv(ones, w, stride=stride, padding=padding).sum().item() * c_out
    assert B.layer_flops(transposed, x_shape, w_shape, stride, padding) == 2 * macs


def test_dense_flops_per_image_match_anchors():
    """The published DCGAN-64 figures: 104.6 M (generator) and 103.8 M (discriminator) multiply-adds per image."""
    macs = {"G": 0, "D": 0}
    for name, *layer in layer_shapes(batch=1):
        macs[name[0]] += B.dense_layer_flops(*layer) / 2
    assert macs["G"] / 1e6 == pytest.approx(104.6, abs=0.05)
    assert macs["D"] / 1e6 == pytest.approx(103.8, abs=0.05)


def test_summary_ratios_and_fractions():
    layer = {"name": "D1", "flops_fwd": 2e12, "flops_bwd": 4e12}
    times = {"fastgan_fwd": 4.0, "eager_fwd": 5.0, "fastgan_fwd_bwd": 20.0, "eager_fwd_bwd": 15.0}
    rec = B.summarize(layer, times, peak_tflops=800.0)
    assert rec["speedup_fwd"] == 1.25 and rec["speedup_fwd_bwd"] == 0.75
    assert rec["fastgan_fwd_tflops"] == 500.0  # 2e12 FLOP in 4 ms
    assert rec["fastgan_fwd_fraction_of_bf16_peak"] == 0.625
    assert rec["fastgan_fwd_bwd_tflops"] == 300.0 and rec["eager_fwd_bwd_fraction_of_bf16_peak"] == 0.5
    assert B.backward_flops("G0", 10) == 10 and B.backward_flops("G1", 10) == 20


def test_result_path(monkeypatch):
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    monkeypatch.setenv("OUT", "/tmp/out")
    assert str(B.result_path(None, "NVIDIA H100 80GB HBM3", now)) == \
        "/tmp/out/conv_layers_nvidia-h100-80gb-hbm3_20260102T030405Z.json"
    assert B.result_path("/x", "A", now).parent == pathlib.Path("/x")
    monkeypatch.delenv("OUT")
    assert B.result_path(None, "A", now).parent == ROOT / "benchmarks" / "results"


def test_scripts_refuse_to_run_without_a_gpu_or_under_the_interpreter():
    with pytest.raises(SystemExit):
        B.main([])
    with pytest.raises(SystemExit):
        T.main([])


def test_tile_candidates_fit_shared_memory():
    for kind in ("conv", "conv_wgrad"):
        bf16 = T.candidates(kind, element_bytes=2)
        fp32 = T.candidates(kind, element_bytes=4)
        assert bf16 and len(fp32) <= len(bf16)
        for tile in fp32:
            assert T.smem_estimate(tile.BLOCK_M, tile.BLOCK_N, tile.BLOCK_K, tile.num_stages, 4) <= T.SMEM_LIMIT
        assert len(T.candidates(kind, max_configs=2)) == 2
        # The shipped default is timed first, once: the baseline of the search.
        shipped = _tiles.load_table("cuda_90.json")[kind]["default"]
        assert bf16[0] == shipped and bf16.count(shipped) == 1


def test_built_table_is_valid_merges_and_mirrors_bf16_to_fp16():
    tile = _tiles.Tile(BLOCK_M=128, BLOCK_N=64, BLOCK_K=64, GROUP_M=8, num_warps=4, num_stages=3)
    older = _tiles.Tile(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32)
    existing = {"conv": {"default": older.as_dict(), "by_shape": {"bf16_m16_n16_k16": older.as_dict()}}}
    existing["about"] = "why the defaults are what they are"
    table = T.build_table(existing, {"conv": {"bf16_m16384_n256_k2048": tile}}, {"tuned_on": "test"})
    parsed = _tiles.parse_table(json.loads(json.dumps(table)), "t", None)
    assert parsed["conv"]["by_shape"]["bf16_m16384_n256_k2048"] == tile
    assert parsed["conv"]["by_shape"]["fp16_m16384_n256_k2048"] == tile
    assert parsed["conv"]["by_shape"]["bf16_m16_n16_k16"] == older
    assert parsed["conv_wgrad"]["default"] == _tiles.load_table("default.json")["conv_wgrad"]["default"]
    assert table["tuned"] == {"tuned_on": "test"} and table["about"] == "why the defaults are what they are"


def _one_call_bench(fn, **kwargs):
    """Stands in for triton.testing.do_bench on the CPU: runs fn once, '1 ms'."""
    fn()
    return 1.0


SMALL_LAYERS = [("G1", True, (1, 16, 2, 2), (16, 8, 4, 4), 2, 1), ("D0", False, (1, 3, 8, 8), (8, 3, 4, 4), 2, 1)]


@pytest.mark.parametrize("layer", SMALL_LAYERS, ids=["G1-like", "D0-like"])
def test_bench_layer_runs_end_to_end_on_the_interpreter(layer):
    """The measuring code path (inputs, correctness check, the two providers, the
    record) on small shapes with the kernels on Triton's interpreter."""
    import fastgan

    with fastgan.use_backend("triton"):
        rec, times = B.bench_layer(*layer, torch.float32, _one_call_bench, device="cpu")
    assert set(times) == {"fastgan_fwd", "eager_fwd", "fastgan_fwd_bwd", "eager_fwd_bwd"}
    assert set(rec["rel_err_vs_eager"]) == {"forward", "grad_input", "grad_weight", "grad_bias"}
    assert max(rec["rel_err_vs_eager"].values()) < 1e-5
    assert rec["tile_lookups"] and all(k.split(":")[0] in _tiles.KINDS for k in rec["tile_lookups"])


def test_tune_picks_a_tile_per_lookup_key_on_the_interpreter():
    logs = []
    winners = T.tune(SMALL_LAYERS[:1], torch.float32, 2, _one_call_bench, log=logs.append, device="cpu")
    assert set(winners) == {"conv", "conv_wgrad"}
    assert all(key.startswith("fp32_") for entry in winners.values() for key in entry)
    assert any("best" in line for line in logs)


def test_vet_finds_what_a_tile_does_to_the_training_steps_own_variants(tmp_path):
    """The tile that broke the step on an H200 (2026-12-04): 128 x 256 x 64 for the conv
    gather kernel, chosen by the timed search on the layers' bias variant, spills in the
    step's batch-norm epilogue variants. vet() compiles those variants for sm_90 (no GPU)
    and must say so; compiled kernels, so in a subprocess with the interpreter off."""
    code = ("import json, tune_conv_tiles as T; from fastgan.kernels import _tiles; "
            "print(json.dumps(T.vet('conv', _tiles.Tile(BLOCK_M=128, BLOCK_N=256, BLOCK_K=64, GROUP_M=8, "
            "num_warps=8, num_stages=3))))")
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FASTGAN_POISON_OUTPUTS")}
    env.update(TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks"), env.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1200,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    problems = json.loads(proc.stdout.strip().splitlines()[-1])
    assert problems and all("tile=128x256x64" in p for p in problems)
    assert any("bn_stats" in p and "spills" in p for p in problems)
