"""The static kernel report (tests/kernels/static_report.py) on a representative
subset, on this machine without a GPU: every launch is specialised as Triton's JIT
would specialise it on the device, compiled for sm_90 and sm_80, and must be clean
(no spill, shared memory within the target's limit, tensor-core MMA and cp.async/TMA
main loops for every GEMM-shaped kernel). The interpreter, which runs every other
kernel test, accepts programs Triton's compiler rejects; this test compiles them.

The full report (every workload, both architectures) takes several minutes:
    TRITON_INTERPRET=0 python tests/kernels/static_report.py
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).with_name("static_report.py")


def _report(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FASTGAN_POISON_OUTPUTS")}
    # A fresh cache: compile for real, not load an earlier run's cubins.
    env.update(TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1", TRITON_CACHE_DIR=str(tmp_path / "cache"))
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--json", str(out)], capture_output=True, text=True,
                          env=env, timeout=900)
    rows = json.loads(out.read_text()) if out.exists() else None
    return proc, rows


# The toy MLP GAN step on sm_90 only (about 17 more compiles; the full report covers sm_80).
WORKLOADS = {90: ("variants-quick", "train-toy-bf16"), 80: ("variants-quick",)}


@pytest.mark.parametrize("arch", [90, 80])
def test_static_report_is_clean(tmp_path, arch):
    """Kernel variants of both conv kernels (per-tap and flattened K, transposed, with
    and without the activation-derivative prologue, split-K partial sums), the linear
    GEMM (forward, input and weight gradient; 40 features: K-padded copies), in fp16 and
    bf16, and on sm_90 one training step of the toy MLP GAN `fastgan train` builds
    (2-feature input and 1-logit head: rank-K launches without tl.dot), as launched on
    the target's SM count."""
    proc, rows = _report(tmp_path, "--arch", str(arch), "--workload", *WORKLOADS[arch])
    assert rows is not None, proc.stderr[-3000:]
    bad = [r for r in rows if r["problems"]]
    assert proc.returncode == 0 and not bad, proc.stdout[-4000:]
    assert {r["kernel"] for r in rows} >= {"_conv_gather_kernel", "_conv_wgrad_kernel", "_gemm_kernel"}
    if "train-toy-bf16" in WORKLOADS[arch]:
        toy = [r for r in rows if r["kernel"] == "_gemm_kernel" and "train-toy-bf16" in r["workloads"]]
        rank_k = [r for r in toy if "rank" in r["variant"]]
        assert rank_k and not any(r["gemm"] for r in rank_k)  # K = 1, 2: outer products, no tl.dot
        assert any(r["gemm"] for r in toy)
    gemm = [r for r in rows if r["gemm"]]
    want = "HGMMA" if arch == 90 else "HMMA"
    assert gemm and all(r["mma"] == want and r["pipelined_loads"] > 0 and r["loop_per_mma"] > 0 for r in gemm)
    assert any("FLAT_K" in r["variant"] for r in gemm) and any("FLAT_K" not in r["variant"] and
                                                               r["kernel"] == "_conv_gather_kernel" for r in gemm)


def test_each_rule_flags_a_row():
    """The verdicts can fail: a clean row, then one fault at a time."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import static_report as R
    finally:
        sys.path.pop(0)
    clean = dict(arch=90, kernel="_conv_gather_kernel", dtype="float32", variant="", launches=1, workloads=[],
                 registers=200, stack=0, local=0, local_stores=0, shared=200 * 1024, gemm=True, wants_mma=True,
                 mma="HGMMA", pipelined_loads=4, compile_s=0.0, problems=[])
    assert R.judge(R.Row(**clean)) == []
    assert R.judge(R.Row(**{**clean, "stack": 8})) == []  # a frame no instruction touches
    faults = {
        "spills": dict(local=8), "local_stores": dict(local_stores=1),
        "shared memory": dict(shared=228 * 1024), "tensor-core": dict(mma="none"),
        "cp.async": dict(pipelined_loads=0),
    }
    for words, change in faults.items():
        problems = R.judge(R.Row(**{**clean, **change}))
        assert len(problems) == 1 and (words in problems[0] or "spills" in problems[0]), (change, problems)
    # sm_80 allows 163 KB; an ieee float32 GEMM (TF32 refused by PyTorch) needs no MMA.
    assert R.judge(R.Row(**{**clean, "arch": 80}))
    assert R.judge(R.Row(**{**clean, "wants_mma": False, "mma": "none"})) == []


def test_bfloat16_cpu_launches_are_recorded_only_while_stubbed():
    """The report records bf16 launches on CPU tensors: allowed while launches are
    stubbed (nothing computes), still refused for a real run (the interpreter has no
    bfloat16 math)."""
    import torch

    import fastgan
    from fastgan import functional as FG
    from fastgan.bench.launches import recording_launches
    from fastgan.kernels import _common

    x = torch.randn(2, 8, 6, 6, dtype=torch.bfloat16)
    w = torch.randn(16, 8, 3, 3, dtype=torch.bfloat16)
    with fastgan.use_backend("triton"), _common.emulating("cuda_90", 132):
        with recording_launches(execute=False) as launches:
            FG.conv2d_bias_act(x, w, None, padding=1, act="relu")
        assert [launch.name for launch in launches] == ["_conv_gather_kernel"]
        with pytest.raises(RuntimeError, match="bfloat16|TRITON_INTERPRET"):
            FG.conv2d_bias_act(x, w, None, padding=1, act="relu")


SASS = """
        /*0100*/                   IMAD R1, R2, R3, RZ ;
.L_x_1:
        /*0110*/                   LDS R4, [R5] ;
        /*0120*/                   HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], R24 ;
        /*0130*/                   IMAD R6, R6, 0x2, RZ ;
        /*0140*/                   HGMMA.64x64x16.F32.BF16 R24, gdesc[UR8], R24, gsb0 ;
        /*0150*/               @P0 BRA 0x110 ;
        /*0160*/                   IMAD R7, R7, R7, RZ ;
        /*0170*/               @P1 BRA 0x100 ;
        /*0180*/                   FADD R8, R8, R8 ;
        /*0190*/               @P2 BRA 0x180 ;
        /*01a0*/                   EXIT ;
"""


def test_main_loop_instructions_per_mma_come_from_the_longest_loop_holding_mmas():
    import static_report

    # Loops: 0x110-0x150 (5 instructions, 2 MMAs), 0x100-0x170 (8, 2), 0x180-0x190 (no MMA).
    assert static_report.main_loop_per_mma(SASS) == 8 / 2
    assert static_report.main_loop_per_mma(SASS.replace("HGMMA", "FFMA")) == 0.0
    assert static_report.main_loop_per_mma(SASS.replace("HGMMA.64x64x16.F32.BF16", "HMMA.16816.F32.BF16")) == 4.0


def test_the_float16_workload_launches_float16_kernels():
    """dcgan-fp16 is the bf16 step under a float16 autocast (static_report._dcgan_step):
    when the step built its own autocast context instead, the workload silently ran
    float32 and the report lost its fp16 rows (caught on 2026-12-04)."""
    import static_report
    from fastgan.bench.launches import recording_launches
    from fastgan.kernels._common import emulating

    with emulating("cuda_90", 132):
        step = static_report._dcgan_step("float16", 2)
        with recording_launches(execute=False) as launches:
            step()
    convs = [launch for launch in launches if launch.name == "_conv_gather_kernel"]
    assert convs and {static_report._dtype_of(launch) for launch in convs} == {"float16"}
