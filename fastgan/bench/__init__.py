"""Benchmark machinery shared by `fastgan bench`, the pytest-benchmark suites under
benchmarks/ and the device scripts there.

    measure   timing (CUDA events / perf_counter medians), the measured ceilings
              (dense matmul rate, copy bandwidth), peak memory, run metadata and
              result JSON files
    flops     FLOPs of conv / transposed conv / linear layers from their shapes
    dcgan     plain torch.nn DCGAN models (the `eager` provider), the providers
              (eager, compile, fastgan), the training step and its benchmark
"""

from .measure import (  # noqa: F401
    Timing,
    copy_gbytes_per_s,
    environment,
    git_commit,
    matmul_tflops,
    peak_memory_bytes,
    result_path,
    time_ms,
    write_json,
)
