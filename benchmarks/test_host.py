"""Host overhead of the DCGAN-64 training step (fastgan.bench.host): eager against
fastgan with every Triton launch stubbed out, and the launch count of a real-size step
(batch 256, bf16 tiles as on sm_90). Reports the figures; asserts what must hold for
them to mean anything (launches happened, nothing ran on the wrong path), never a
speed target. `fastgan bench --host` prints the same report."""

import pytest

from conftest import DEVICE, QUICK
from fastgan._backend import interpreter_enabled
from fastgan.bench import host

pytestmark = pytest.mark.skipif(not interpreter_enabled(), reason="backend 'triton' on CPU tensors needs TRITON_INTERPRET=1")


def test_host_overhead(benchmark):
    result = host.measure_host(repeats=5 if QUICK else 20, warmup=2)
    # Every conv / BN / loss of the step reached a (stubbed) Triton launch.
    assert result.launches_per_step > 0 and "_conv_gather_kernel" in result.launch_names
    assert all(t > 0 for t in result.eager_ms + result.fastgan_ms)
    benchmark.extra_info.update(result.as_dict(), device=DEVICE, quick=QUICK)
    print(f"\nhost ms/step eager {result.eager_median_ms:.2f}, fastgan {result.fastgan_median_ms:.2f}, "
          f"ratio {result.ratio:.3f}, {result.launches_per_step} launches/step, {result.us_per_launch:.1f} us/launch")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the figures are in extra_info


def test_real_size_launch_count(benchmark):
    counted = host.launch_count()
    by_kernel = counted["by_kernel"]
    assert counted["launches_per_step"] == sum(by_kernel.values())
    # 13 conv layers run forward (D three times), and bf16 passed through the stub.
    assert by_kernel.get("_conv_gather_kernel", 0) >= 13
    benchmark.extra_info.update(counted, device=DEVICE, quick=QUICK)
    print(f"\nlaunches per DCGAN-64 step (batch 256, bf16, sm_90 tiles): {counted['launches_per_step']}")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
