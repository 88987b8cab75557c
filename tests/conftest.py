import os

# Triton decides at import whether kernels run through its CPU interpreter.
os.environ.setdefault("TRITON_INTERPRET", "1")
# Kernel launchers fill their outputs with NaN before each launch: an element a kernel
# forgets to write can never pass a comparison.
os.environ.setdefault("FASTGAN_POISON_OUTPUTS", "1")
# Every replayed launch-plan tape (kernels/_plans.py) is checked against its keys.
os.environ.setdefault("FASTGAN_CHECK_TAPES", "1")
# One intra-op thread for torch (OpenMP) and numpy (OpenBLAS; the interpreter runs each
# tl.dot as a small numpy matmul), inherited by subprocesses: the tests use small
# tensors, and on a shared 2-core machine worker threads spin against each other (a
# gradgradcheck test took 471 s with two threads and 32 s with one; a 128x128 product
# in the interpreter up to 30 ms instead of 0.1 ms). Set before torch and numpy load.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import fastgan  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# The default draws the same examples on every run (seeded from each test): a pass is
# reproducible and CI cannot fail on a draw nobody has run. New draws come from
# HYPOTHESIS_PROFILE=thorough (300 fresh examples a test); run it after changing a
# kernel or a tolerance (a float16 case it would have found failed one CI run).
settings.register_profile(
    "default",
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
    derandomize=True,
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=300, derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _keep_threads():
    # The commands (fastgan train/eval/bench) set torch's thread count in-process.
    yield
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _restore_backend():
    before = fastgan.get_backend()
    yield
    fastgan.set_backend(before)
