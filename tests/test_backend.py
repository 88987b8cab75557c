"""Backend selection: set_backend, use_backend, FASTGAN_BACKEND, and the triton
backend's clear error on CPU tensors without Triton's interpreter."""

import os
import subprocess
import sys

import pytest
import torch

import fastgan
from fastgan import _backend
from fastgan import functional as FG


def test_set_get_and_context_manager():
    fastgan.set_backend("reference")
    assert fastgan.get_backend() == "reference"
    with fastgan.use_backend("triton"):
        assert fastgan.get_backend() == "triton"
        with fastgan.use_backend("auto"):
            assert fastgan.get_backend() == "auto"
        assert fastgan.get_backend() == "triton"
    assert fastgan.get_backend() == "reference"


def test_context_manager_restores_after_an_exception():
    fastgan.set_backend("auto")
    with pytest.raises(RuntimeError):
        with fastgan.use_backend("reference"):
            raise RuntimeError("inside")
    assert fastgan.get_backend() == "auto"


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match=r"backend must be one of .*got 'cuda'"):
        fastgan.set_backend("cuda")


def test_auto_picks_reference_for_cpu_tensors():
    fastgan.set_backend("auto")
    assert _backend.resolve(torch.zeros(1)) == "reference"


def _run(code, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FASTGAN_BACKEND")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300)


def test_environment_variable_sets_the_initial_backend():
    out = _run("import fastgan; print(fastgan.get_backend())", FASTGAN_BACKEND="reference")
    assert out.returncode == 0 and out.stdout.strip() == "reference"
    bad = _run("import fastgan", FASTGAN_BACKEND="fast")
    assert bad.returncode != 0 and "FASTGAN_BACKEND must be one of" in bad.stderr


def test_triton_on_cpu_without_interpreter_is_a_clear_error():
    code = (
        "import torch, fastgan\n"
        "from fastgan import functional as FG\n"
        "fastgan.set_backend('triton')\n"
        "FG.linear_bias_act(torch.randn(2, 3), torch.randn(4, 3))\n"
    )
    out = _run(code)
    assert out.returncode != 0
    assert "needs Triton's interpreter: set TRITON_INTERPRET=1" in out.stderr


def test_reference_backend_never_imports_kernels():
    out = _run(
        "import sys, torch, fastgan\n"
        "from fastgan import functional as FG\n"
        "FG.conv2d_bias_act(torch.randn(1, 1, 3, 3), torch.randn(1, 1, 3, 3))\n"
        "print('triton' in sys.modules, 'fastgan.kernels.conv' in sys.modules)\n"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == "False"


def test_triton_on_cpu_refuses_bfloat16_before_any_kernel_runs():
    # The interpreter has no bfloat16 math and would return garbage, not an error.
    x, w = torch.randn(2, 3).bfloat16(), torch.randn(4, 3).bfloat16()
    with fastgan.use_backend("triton"), pytest.raises(RuntimeError, match="no bfloat16 math"):
        FG.linear_bias_act(x, w)
    with fastgan.use_backend("triton"):  # float16 and float32 run on the interpreter
        assert FG.linear_bias_act(x.half(), w.half()).dtype == torch.float16


def test_bfloat16_on_cpu_is_refused_unless_launches_are_stubbed():
    from fastgan.bench.launches import recording_launches

    x = torch.zeros(2, dtype=torch.bfloat16)
    with fastgan.use_backend("triton"):
        if not _backend.interpreter_enabled():
            pytest.skip("backend 'triton' on CPU tensors needs TRITON_INTERPRET=1")
        with pytest.raises(RuntimeError, match="no bfloat16 math"):
            _backend.resolve(x)
        with recording_launches(execute=False):  # nothing is computed: counting bf16 launches is fine
            assert _backend.resolve(x) == "triton"
        with recording_launches(execute=True):  # launches run: the interpreter would compute garbage
            with pytest.raises(RuntimeError, match="no bfloat16 math"):
                _backend.resolve(x)
        with pytest.raises(RuntimeError, match="no bfloat16 math"):
            _backend.resolve(x)


def test_unrecorded_stub_launches_nothing_and_records_nothing():
    """recording_launches(execute=False, record=False), the host benchmark's timed
    steps: each launch is a call that leaves the output as allocated (poisoned) and
    the list empty; with recording, the same call is recorded; record=False with
    execute=True is refused."""
    from fastgan.bench.launches import recording_launches
    from fastgan.kernels import _common

    x, w = torch.randn(3, 4), torch.randn(5, 4)
    with fastgan.use_backend("triton"):
        for record in (True, False):
            with recording_launches(execute=False, record=record) as launches, _common.poison_outputs():
                y = FG.linear_bias_act(x, w)
            assert y.shape == (3, 5) and y.isnan().all()  # never written: nothing ran
            assert len(launches) == (1 if record else 0)
    with pytest.raises(ValueError, match="record=False needs execute=False"):
        with recording_launches(execute=True, record=False):
            pass
