"""What fastgan costs on a CPU (fastgan.bench.cpu_path): the fused model on the
reference backend against the same model in plain torch.nn, steps interleaved.
Reports fused / plain step time (targets, not asserted: <= 1.05 for the
pytorch/examples DCGAN at ngf=ndf=32, batch 16, 2 threads; <= 1.1 for the conditional
models of `fastgan train`, 1 thread). Asserts only that both models computed the same first-step
losses from the same weights (the comparison is of one model, not two)."""

import pytest

from conftest import DEVICE, QUICK
from fastgan.bench import cpu_path


@pytest.mark.parametrize("case", cpu_path.CASES)
def test_fused_over_plain_on_cpu(benchmark, case):
    # Quick mode (CI): the DCGAN at batch 4, few steps; the full run is the setup.
    batch = 4 if (QUICK and case == "dcgan") else None
    # 2 threads for the DCGAN (the setup); 1 for the small conditional models, whose
    # steps are short enough that OpenMP threads waiting on a shared core dominate them.
    threads = 2 if case == "dcgan" else 1
    result = cpu_path.measure_case(case, steps=3 if QUICK else 15, warmup=1 if QUICK else 3, batch=batch,
                                   threads=threads)
    first = result["first_losses"]
    for plain, fused in zip(first["plain"], first["fused"]):
        assert fused == pytest.approx(plain, rel=1e-4, abs=1e-5)
    benchmark.extra_info.update(result, device=DEVICE, quick=QUICK)
    print(f"\n{case}: plain {result['plain_ms']:.1f} ms, fused {result['fused_ms']:.1f} ms, ratio {result['ratio']:.3f}")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
