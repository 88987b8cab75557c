"""The kernels compile for an H100 (sm_90) with the specializations the launchers ask
for, on this machine without a GPU: the interpreter, which runs every other kernel
test, accepts programs Triton's compiler rejects. tests/kernels/compile_for_gpu.py
(without --quick) covers more specializations and sm_80 too."""

import os
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).with_name("compile_for_gpu.py")


def test_kernels_compile_for_sm90(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FASTGAN_POISON_OUTPUTS")}
    # A fresh cache: compile for real, not load an earlier run's cubins.
    env.update(TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1", TRITON_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, str(SCRIPT), "--quick", "90"], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    compiled = [line for line in out.stdout.splitlines() if line.startswith("compiled sm_90")]
    kernels = {line.split()[2] for line in compiled}
    assert kernels == {"_conv_gather_kernel", "_conv_wgrad_kernel", "_gemm_kernel"}, out.stdout
    assert any("FLAT_K=True" in line for line in compiled) and any("FLAT_K=False" in line for line in compiled)
