"""Compile the kernels for NVIDIA GPUs on a machine without one (Triton's compiler and
the ptxas it ships need no device), with the exact specializations the launchers ask
for: the interpreter runs @triton.jit code as Python and accepts programs the compiler
rejects (a scalar where a block is needed, a loop-carried value changing type, ...).

Run with TRITON_INTERPRET=0 (test_gpu_compile.py does, in a subprocess):
    python tests/kernels/compile_for_gpu.py [--quick] [arch ...]     (default: 90 80)
Each launch is recorded instead of run (CPU tensors stand in for device ones), then
compiled to a cubin for GPUTarget("cuda", arch, 32); one line per compiled kernel.
"""

from __future__ import annotations

import os
import sys

import torch

DTYPE_SIG = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64",
             torch.int32: "i32"}


class Recorder:
    """Stands in for a @triton.jit kernel: `kernel[grid](*args, **kwargs)` records."""

    def __init__(self, fn, calls):
        self.fn, self.calls = fn, calls

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.calls.append((self.fn, args, kwargs))

        return launch


def record_launches(quick: bool = False):
    """Launch calls the launchers make for DCGAN-64-like layers and linear layers
    (quick: two layers and one linear, which still reach every kernel)."""
    from fastgan.kernels import _tiles
    from fastgan.kernels import conv as KC
    from fastgan.kernels import linear as KL

    calls = []
    KC._conv_gather_kernel = Recorder(KC._conv_gather_kernel, calls)
    KC._conv_wgrad_kernel = Recorder(KC._conv_wgrad_kernel, calls)
    KL._gemm_kernel = Recorder(KL._gemm_kernel, calls)
    default = _tiles.load_table("default.json")
    for kind in _tiles.KINDS:
        _tiles.force(kind, default[kind]["default"])
    # A forced split, so that the in-launch reduction of the partial sums is compiled too.
    _tiles.force("conv_wgrad", _tiles.Tile(**{**default["conv_wgrad"]["default"].as_dict(), "SPLIT_K": 2}))

    def conv(transposed, dtype, n, c_in, c_out, hw, k, s, p, act, clamp=None):
        x = torch.randn(n, c_in, *hw).to(dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(*((c_in, c_out) if transposed else (c_out, c_in)), k, k).to(dtype)
        b = torch.randn(c_out).to(dtype)
        y, z = KC.conv_fwd(x, w, b, [s, s], [p, p], [0, 0], transposed, act, 0.2, 1.0, clamp)
        saved = z if act == "silu" else y
        KC.conv_grad_input(y, saved, w, hw, [s, s], [p, p], transposed, act, 0.2, 1.0, clamp)
        KC.conv_grad_weight(y, saved, x, [k, k], [s, s], [p, p], transposed, act, 0.2, 1.0, clamp, True)

    conv(True, torch.bfloat16, 2, 512, 256, (4, 4), 4, 2, 1, "relu")  # G1: per-tap K blocks
    conv(False, torch.bfloat16, 2, 3, 64, (16, 16), 4, 2, 1, "lrelu")  # D0: flattened K
    if not quick:
        conv(True, torch.bfloat16, 2, 64, 3, (8, 8), 4, 2, 1, "tanh")  # G4: 3 output channels
        conv(False, torch.float16, 2, 40, 24, (9, 9), 3, 1, 1, "silu", 2.0)
        conv(False, torch.float32, 2, 16, 8, (5, 5), 3, 2, 0, "sigmoid")
        conv(True, torch.bfloat16, 2, 64, 32, (4, 4), 4, 2, 1, "linear")  # no saved tensor
    linears = ((torch.bfloat16, "silu"),) if quick else ((torch.bfloat16, "silu"), (torch.float32, "lrelu"))
    for dtype, act in linears:
        x, w = torch.randn(8, 100).to(dtype), torch.randn(64, 100).to(dtype)
        y, z = KL.linear_fwd(x, w, torch.randn(64).to(dtype), act, 0.2, 1.0, None)
        saved = z if act == "silu" else y
        KL.linear_grad_input(y, saved, w, act, 0.2, 1.0, None)
        KL.linear_grad_weight(y, saved, x, act, 0.2, 1.0, None, True)
    return calls


def signature(fn, args, kwargs):
    """(signature, constexprs) of one recorded launch, as ASTSource takes them. Ints
    equal to 1 are passed as constants, as Triton's launcher specializes them."""
    sig, consts = {}, {}
    names = fn.arg_names
    for name, value in zip(names, args):
        if isinstance(value, torch.Tensor):
            sig[name] = "*" + DTYPE_SIG[value.dtype]
        elif isinstance(value, bool):
            sig[name] = "i1"
        elif isinstance(value, int):
            if value == 1:
                sig[name], consts[name] = "constexpr", 1
            else:
                sig[name] = "i32"
        elif isinstance(value, float):
            sig[name] = "fp32"
        else:
            raise TypeError(f"{fn.__name__}: argument {name} of type {type(value).__name__}")
    for name, value in kwargs.items():
        if name in names:
            sig[name], consts[name] = "constexpr", value
    return sig, consts


def main(archs, quick: bool = False) -> int:
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        print("run with TRITON_INTERPRET=0: the interpreter does not compile", file=sys.stderr)
        return 2
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    seen = set()
    for fn, args, kwargs in record_launches(quick):
        sig, consts = signature(fn, args, kwargs)
        key = (fn.__name__, tuple(sorted(sig.items())), tuple(sorted((k, str(v)) for k, v in consts.items())))
        if key in seen:
            continue
        seen.add(key)
        options = {k: kwargs[k] for k in ("num_warps", "num_stages") if k in kwargs}
        for arch in archs:
            kernel = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", arch, 32), options=options)
            assert kernel.asm["cubin"], "no cubin"
            flags = ",".join(f"{k}={consts[k]}" for k in ("TRANSPOSED", "FLAT_K", "FLAT_N", "PROLOGUE", "ACT") if k in consts)
            print(f"compiled sm_{arch} {fn.__name__} [{flags}] shared={kernel.metadata.shared}")
    return 0


if __name__ == "__main__":
    argv = sys.argv[1:]
    quick = "--quick" in argv
    sys.exit(main([int(a) for a in argv if a != "--quick"] or [90, 80], quick))
