"""The CUDA-graph providers of the step benchmark (compile-reduce-overhead,
fastgan-cuda-graph): skipped on a CPU with their reason, never measured as something
else; a provider that fails is recorded as failed and the others are still measured.
On a GPU (marker gpu): the graphed fastgan step equals the eager fastgan step bit for
bit, and reduce-overhead trains."""

import json

import pytest
import torch

from fastgan.bench import dcgan
from fastgan.cli import main

TINY = ["--device", "cpu", "--batch", "2", "--image-size", "8", "--width", "4", "--latent", "8", "--steps", "1",
        "--warmup", "1"]


def test_cuda_only_providers_are_skipped_on_a_cpu_with_their_reason(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", *TINY, "--providers", "eager,compile-reduce-overhead,fastgan-cuda-graph", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    records = json.loads(out.read_text())["records"]
    assert [r["provider"] for r in records] == ["eager", "compile-reduce-overhead", "fastgan-cuda-graph"]
    assert records[0]["ms_per_step"] > 0 and records[0]["skipped"] is None
    for r in records[1:]:
        assert r["skipped"] == dcgan.CUDA_ONLY[r["provider"]] and "needs CUDA" in r["skipped"]
        assert r["ms_per_step"] is None and r["images_per_s"] is None and r["mfu"] is None
        assert r["losses_finite"] is None and r["vs_eager"] is None and r["samples_ms"] == []
    rows = {}
    for line in printed.splitlines():  # the table rows (the notes below them start with a name too)
        if line.split():
            rows.setdefault(line.split()[0], line.split())
    assert rows["fastgan-cuda-graph"][1] == "skipped" and rows["compile-reduce-overhead"][1] == "skipped"
    assert f"fastgan-cuda-graph skipped: {dcgan.CUDA_ONLY['fastgan-cuda-graph']}" in printed


def test_default_providers_include_the_graph_ones():
    assert set(dcgan.CUDA_ONLY) <= set(dcgan.PROVIDERS)
    assert "fastgan-cuda-graph" not in dcgan.MODULE_PROVIDERS  # a whole-step provider


def test_a_cuda_only_step_refuses_a_cpu():
    cfg = dcgan.StepConfig(batch=2, size=8, width=4, latent=8)
    for provider in dcgan.CUDA_ONLY:
        with pytest.raises(ValueError, match=f"provider '{provider}' on cpu: needs CUDA"):
            dcgan.GANStep(provider, *dcgan.make_models(cfg), cfg)


def test_a_failing_provider_is_recorded_and_the_command_fails(monkeypatch, tmp_path, capsys):
    measured = dcgan.bench_provider

    def fastgan_breaks(provider, cfg, **kwargs):
        if provider == "fastgan":
            raise RuntimeError("kernel exploded\nsecond line")
        return measured(provider, cfg, **kwargs)

    monkeypatch.setattr(dcgan, "bench_provider", fastgan_breaks)
    out = tmp_path / "bench.json"
    assert main(["bench", *TINY, "--providers", "fastgan,eager", "--json", str(out)]) == 1
    captured = capsys.readouterr()
    records = json.loads(out.read_text())["records"]
    assert records[0]["error"] == "RuntimeError: kernel exploded" and records[0]["ms_per_step"] is None
    assert records[1]["provider"] == "eager" and records[1]["ms_per_step"] > 0  # still measured
    assert "fastgan failed: RuntimeError: kernel exploded" in captured.out
    assert "failed or non-finite losses from fastgan" in captured.err


def test_ratios_and_summary_with_graph_rows_and_a_skipped_one():
    rows = [{"provider": p, "ms_per_step": ms, "peak_memory_bytes": None}
            for p, ms in (("eager", 10.0), ("compile", 5.0), ("fastgan", 4.0), ("fastgan-cuda-graph", 2.0),
                          ("compile-reduce-overhead", None))]
    records = {r["provider"]: r for r in dcgan.add_ratios(rows)}
    assert records["fastgan-cuda-graph"]["vs_fastgan"] == 2.0 and records["fastgan-cuda-graph"]["vs_eager"] == 5.0
    assert all(records["compile-reduce-overhead"][f"vs_{b}"] is None for b in dcgan.RATIO_BASES)
    s = dcgan.summary(list(records.values()))
    assert s["fastgan_cuda_graph_vs_fastgan"] == 2.0 and s["fastgan_cuda_graph_vs_compile"] == 2.5
    assert s["fastgan_vs_eager"] == 2.5 and not any(k.startswith("compile_reduce") for k in s)


def test_graph_provider_is_captured_during_warm_up():
    assert dcgan.provider_warmup("fastgan-cuda-graph", 1) == dcgan.GRAPH_WARMUP + 1
    assert dcgan.provider_warmup("fastgan-cuda-graph", 10) == 10
    assert dcgan.provider_warmup("fastgan", 1) == 1


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_graphed_fastgan_step_equals_the_eager_fastgan_step(dtype):
    cfg = dcgan.StepConfig(batch=8, size=16, width=8, latent=16, dtype=dtype, cond="class", device="cuda")
    inputs = dcgan.make_inputs(cfg)
    eager = dcgan.GANStep("fastgan", *dcgan.make_models(cfg), cfg)
    graphed = dcgan.GANStep("fastgan-cuda-graph", *dcgan.make_models(cfg), cfg)
    for i in range(dcgan.GRAPH_WARMUP + 3):
        batch = inputs[i % len(inputs)]
        (d0, g0), (d1, g1) = eager(*batch), graphed(*batch)
        assert torch.equal(d0, d1) and torch.equal(g0, g1), i
        for p0, p1 in zip(list(eager.G.parameters()) + list(eager.D.parameters()),
                          list(graphed.G.parameters()) + list(graphed.D.parameters())):
            assert torch.equal(p0, p1), i
    assert graphed.graph.captured


@pytest.mark.gpu
def test_reduce_overhead_provider_trains():
    cfg = dcgan.StepConfig(batch=8, size=16, width=8, latent=16, device="cuda")
    step = dcgan.GANStep("compile-reduce-overhead", *dcgan.make_models(cfg), cfg)
    for real, c, z in dcgan.make_inputs(cfg) * 2:
        d, g = step(real, c, z)
    assert torch.isfinite(d) and torch.isfinite(g)


@pytest.mark.gpu
def test_bench_runs_every_provider_on_a_gpu():
    """What benchmarks/run_device.sh does, at a small size: every provider measured, the
    graphed one captured during its (raised) warm-up."""
    cfg = dcgan.StepConfig(batch=8, size=16, width=8, latent=16, dtype="bfloat16", device="cuda")
    result = dcgan.run(cfg, dcgan.PROVIDERS, warmup=1, steps=3).as_dict()
    by = {r["provider"]: r for r in result["records"]}
    assert list(by) == list(dcgan.PROVIDERS)
    for r in by.values():
        assert r["error"] is None and r["skipped"] is None, r
        assert r["ms_per_step"] > 0 and r["losses_finite"]
    assert by["fastgan-cuda-graph"]["warmup_steps"] == dcgan.GRAPH_WARMUP + 1
    assert "fastgan_cuda_graph_vs_fastgan" in result["summary"]


def test_plain_generator_feeds_z_in_channels_last_strides():
    """torch 2.11's inductor predicted a channels_last weight gradient for the first
    transposed conv while cuDNN returned a contiguous one when z came in as
    z[:, :, None, None] (strides (C, 1, 1, 1)): torch.compile of the step failed its
    stride check on an H200. The generator feeds z as a channels_last 1x1 image, the
    same values."""
    G = dcgan.PlainGenerator(size=8, width=4, latent=6)
    seen = []
    G.body[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    z = torch.randn(3, 6)
    out = G(z)
    (x,) = seen
    assert x.shape == (3, 6, 1, 1) and x.stride() == (6, 1, 6, 6)
    assert torch.equal(x, z[:, :, None, None])
    # Same model output up to the conv algorithm's rounding (strides can pick another).
    torch.testing.assert_close(out, G.body(z[:, :, None, None].contiguous()), rtol=1e-5, atol=1e-6)
