"""Static report of every Triton kernel a training step launches, compiled for sm_90
and sm_80 on a machine without a GPU.

What it does, per workload (a real training step: the DCGAN-64 benchmark step in
bf16 / fp16 at batch 256 and fp32 at batch 64, the models `fastgan train` builds):
1. runs the step with every Triton launch recorded and not executed
   (fastgan.bench.launches.recording_launches(execute=False)) under
   fastgan.kernels._common.emulating(target, sms), so that tiles, split-K counts and
   dot precision are chosen exactly as on an H100/H200 (132 SMs) or A100 (108 SMs);
2. specialises each launch exactly as Triton's JIT does at run time, with the
   runtime's own helpers (the binder of JITFunction.run and JITFunction._pack_args):
   pointer and int arguments get the 16-byte divisibility attribute when their value
   (a pointer's address) is a multiple of 16, ints equal to 1 become constants;
3. compiles each distinct specialization with triton.compile for GPUTarget("cuda",
   arch, 32) and reads the cubin back with the cuobjdump shipped in the Triton wheel:
   registers, spill stack, local-memory stores, shared memory, the MMA instruction
   kind (HGMMA = wgmma on sm_90, HMMA = mma.sync) and the pipelined loads (LDGSTS =
   cp.async, UTMALDG = TMA).

It exits 1 when any kernel: spills (local-memory stores, STL), needs more shared
memory than the target has (227 KB sm_90, 163 KB sm_80), is GEMM-shaped (has a
tl.dot) without tensor-core MMA (16-bit operands, and float32 whenever the launch
asks for TF32), or has a GEMM main loop with no cp.async / TMA load.

No kernel is exempt. What keeps the small linear layers of the `fastgan train` models
clean is how kernels/linear.py launches them, not the rules: a reduction of K <= 16
terms (the 2-feature toy input, the input gradient of a 1-logit head) runs as K outer
products without tl.dot (variant `rankK`), which is not GEMM-shaped: each output
element takes at most 16 multiply-adds, so such a launch is bound by storing its
output on any unit (kernels/linear.py, RANK_K_MAX); operands that cannot load 16-byte
aligned on either side (40 attributes) are copied K-padded; a compiled K loop always
has two blocks or more (a one-block loop has nothing for cp.async to overlap).

Run with TRITON_INTERPRET=0 (compiled kernels, not the interpreter's):
    TRITON_INTERPRET=0 python tests/kernels/static_report.py                 # everything
    TRITON_INTERPRET=0 python tests/kernels/static_report.py --arch 90 --workload dcgan-bf16
    ... --json report.json --markdown report.md
tests/kernels/test_gpu_compile.py runs a representative subset in CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import torch

# Each architecture: the Triton target of emulating(), its SM count, and the largest
# dynamic shared memory one block may have (CUDA's per-block opt-in maximum).
ARCHS = {
    90: dict(target="cuda_90", sms=132, smem_limit=227 * 1024, mma="HGMMA", gpu="H100/H200"),
    80: dict(target="cuda_80", sms=108, smem_limit=163 * 1024, mma="HMMA", gpu="A100"),
}
# Pipelined (asynchronous) global-to-shared loads: cp.async, TMA.
PIPELINED_LOADS = ("LDGSTS", "UTMALDG", "UBLKCP")

# The constexprs that name a kernel variant in the table (plus the tile).
VARIANT_KEYS = ("TRANSPOSED", "FLAT_K", "FLAT_N", "PROLOGUE", "EPILOGUE", "ROW_SUM", "ACT", "HAS_CLAMP", "STORE_Z",
                "NEED_BIAS", "DOT_PRECISION", "RANK_K", "BN_FOLD", "BN_EPILOGUE", "E_ACT", "FOLD")
TILE_KEYS = ("BLOCK_M", "BLOCK_N", "BLOCK_K")


# ------------------------------------------------------------------ workloads
def _dcgan_step(dtype: str, batch: int):
    """The DCGAN-64 benchmark step (fastgan.bench.dcgan, provider fastgan). fp16 runs
    the bfloat16 configuration with float16 autocast instead."""
    from fastgan.bench import dcgan

    cfg = dcgan.StepConfig(batch=batch, size=64, width=64, dtype="float32" if dtype == "float16" else dtype,
                           device="cpu")
    if dtype == "float16":
        cfg.autocast = lambda cache_enabled=None: torch.autocast("cpu", dtype=torch.float16, cache_enabled=cache_enabled)
    G, D = dcgan.make_models(cfg)
    step = dcgan.GANStep("fastgan", G, D, cfg)
    real, c, z = dcgan.make_inputs(cfg, sets=1)[0]
    return lambda: step(real, c, z)


def _train_step(preset: str, amp: bool, *, cond_kind: str = "label", cond_size: int = 10, r1: float = 0.0):
    """One step of the models `fastgan train` builds for a data preset (digits: 8x8
    label-conditional DCGAN; folder: 64x64 DCGAN with attributes; toy: MLP), as
    fastgan.train.Trainer runs it: D step (G under no_grad, optional R1 penalty by
    double backward), then G step, bf16 autocast when amp."""
    import fastgan
    from fastgan.train import recipes

    opts = recipes.resolve({"data": {"digits": "digits", "toy": "ring", "folder": "/nonexistent"}[preset]})
    opts["r1"] = r1
    if preset == "toy":
        data = SimpleNamespace(is_image=False, sample_shape=(2,), cond_kind=cond_kind, cond_size=cond_size)
    else:
        size = opts["size"]
        data = SimpleNamespace(is_image=True, sample_shape=(opts["channels"], size, size), cond_kind=cond_kind,
                               cond_size=cond_size)
    torch.manual_seed(0)
    G, D = recipes.build_models(opts, data)
    loss = fastgan.nn.GANLoss(opts["loss"])
    batch = opts["batch_size"]
    real = torch.rand(batch, *data.sample_shape) * 2 - 1
    if cond_kind == "attributes":
        c = torch.randint(0, 2, (batch, cond_size)).float()
    elif cond_kind == "none":
        c = None
    else:
        c = torch.randint(cond_size, (batch,))
    z = torch.randn(batch, G.latent_dim)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp)  # noqa: E731

    def step():
        with fastgan.use_backend("triton"):
            x = real.detach().requires_grad_(r1 > 0)
            with autocast():
                with torch.no_grad():
                    fake = G(z, c)
                real_logits = D(x, c)
                d_loss = loss.discriminator(real_logits, D(fake, c)).float()
            total = d_loss
            if r1 > 0:
                (grad,) = torch.autograd.grad(real_logits.float().sum(), x, create_graph=True)
                total = total + r1 * grad.float().square().flatten(1).sum(1).mean()
            opt_d.zero_grad(set_to_none=True)
            total.backward()
            opt_d.step()
            D.requires_grad_(False)
            with autocast():
                g_loss = loss.generator(D(G(z, c), c)).float()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            D.requires_grad_(True)

    return step


def _layer_variants(quick: bool = False, odd: bool = False):
    """Direct launcher calls reaching the kernel variants the property tests use
    beyond the training steps: silu (z stored), clamp, sigmoid, act linear (no saved
    tensor), fp16 / fp32 convs of odd sizes, linear layers with split-K."""
    from fastgan.kernels import conv as KC
    from fastgan.kernels import linear as KL
    from fastgan.reference.activations import needs_preactivation

    def conv(transposed, dtype, n, c_in, c_out, hw, k, s, p, act, clamp=None):
        x = torch.randn(n, c_in, *hw).to(dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(*((c_in, c_out) if transposed else (c_out, c_in)), k, k).to(dtype)
        b = torch.randn(c_out).to(dtype)
        y, z = KC.conv_fwd(x, w, b, [s, s], [p, p], [0, 0], transposed, act, 0.2, 1.0, clamp)
        saved = z if needs_preactivation(act) else y
        KC.conv_grad_input(y, saved, w, hw, [s, s], [p, p], transposed, act, 0.2, 1.0, clamp)
        KC.conv_grad_weight(y, saved, x, [k, k], [s, s], [p, p], transposed, act, 0.2, 1.0, clamp, True)

    def linear(dtype, m, k, n, act):
        x, w = torch.randn(m, k).to(dtype), torch.randn(n, k).to(dtype)
        y, z = KL.linear_fwd(x, w, torch.randn(n).to(dtype), act, 0.2, 1.0, None)
        saved = z if needs_preactivation(act) else y
        KL.linear_grad_input(y, saved, w, act, 0.2, 1.0, None)
        KL.linear_grad_weight(y, saved, x, act, 0.2, 1.0, None, True)

    def run():
        if odd:
            # Channel counts and features that are not multiples of 16 elements: Triton
            # proves no 16-byte alignment for their strides, so 16-bit loads stay 2 bytes
            # wide and cannot be cp.async. The linear launcher copies such operands
            # K-padded (clean); the 40-channel conv is not fixed (docs/kernels.md).
            conv(False, torch.float16, 64, 40, 24, (9, 9), 3, 1, 1, "silu", 2.0)
            linear(torch.bfloat16, 256, 100, 64, "silu")
            return
        conv(False, torch.bfloat16, 64, 3, 64, (16, 16), 4, 2, 1, "lrelu")  # D0: flattened K (and N)
        conv(True, torch.bfloat16, 64, 64, 3, (8, 8), 4, 2, 1, "tanh")  # G4: 3 outputs, FLAT_K gradient
        conv(False, torch.float16, 64, 48, 32, (9, 9), 3, 1, 1, "silu", 2.0)  # per-tap K, z stored, clamp
        linear(torch.bfloat16, 256, 128, 64, "silu")
        if quick:  # the 40-attribute embedding of train-folder-attributes-bf16: K-padded copies
            linear(torch.bfloat16, 64, 40, 128, "lrelu")
        else:
            conv(False, torch.float32, 64, 16, 8, (5, 5), 3, 2, 0, "sigmoid")
            conv(True, torch.bfloat16, 64, 64, 32, (4, 4), 4, 2, 1, "linear")
            linear(torch.float32, 512, 96, 64, "lrelu")

    return run


WORKLOADS = {
    "dcgan-bf16": lambda: _dcgan_step("bfloat16", 256),
    "dcgan-fp16": lambda: _dcgan_step("float16", 256),
    "dcgan-fp32": lambda: _dcgan_step("float32", 64),
    "train-digits-bf16": lambda: _train_step("digits", True),
    "train-digits-fp32-r1": lambda: _train_step("digits", False, r1=1.0),
    "train-folder-attributes-bf16": lambda: _train_step("folder", True, cond_kind="attributes", cond_size=40),
    "train-toy-bf16": lambda: _train_step("toy", True),
    "train-toy-fp32": lambda: _train_step("toy", False),
    "variants": lambda: _layer_variants(),
}
# What CI compiles (tests/kernels/test_gpu_compile.py): every kernel family in 16-bit
# (FLAT_K and per-tap convs, transposed, linear, split-K, batch norm, loss) and fp32 TF32,
# plus, on sm_90, train-toy-bf16 (the MLP GAN step: rank-K launches, small and one-logit layers).
QUICK = {"variants-quick": lambda: _layer_variants(quick=True)}
# Not in the default set (known to fail the cp.async rule, see _layer_variants).
EXTRA = {"variants-unaligned": lambda: _layer_variants(odd=True)}


def record(workload: str, target: str, sms: int) -> list:
    """The Launches of one step of `workload`, chosen as on target with sms SMs."""
    from fastgan.bench.launches import recording_launches
    from fastgan.kernels._common import emulating

    make = {**WORKLOADS, **QUICK, **EXTRA}[workload]
    with emulating(target, sms):
        step = make()
        with recording_launches(execute=False) as launches:
            step()
    return launches


# ------------------------------------------------------------------ specialization
@dataclasses.dataclass
class Spec:
    """One distinct compilation: a kernel with the JIT's signature, constants and
    attributes for one launch, and the launches that share it."""

    kernel: object
    name: str
    signature: dict
    constexprs: dict
    attrs: dict
    options: object
    dtype: str
    launches: int = 0
    workloads: set = dataclasses.field(default_factory=set)

    @property
    def constants(self) -> dict:
        """{parameter name: value} of the constexpr parameters."""
        names = [p.name for p in self.kernel.params]
        return {names[path[0]]: v for path, v in self.constexprs.items() if len(path) == 1}

    def variant(self) -> str:
        c = self.constants
        flags = []
        for k in VARIANT_KEYS:
            v = c.get(k)
            if v is True:
                flags.append(k)
            elif k == "ACT" and v not in (None, "linear"):
                flags.append(f"act={v}")
            elif k == "BN_EPILOGUE" and v not in (None, "none"):
                flags.append(f"bn_{v}")
            elif k == "E_ACT" and c.get("BN_EPILOGUE") == "sums":
                flags.append(f"sums_act={v}")
            elif k == "DOT_PRECISION" and v is not None and self.dtype == "float32":
                flags.append(v)
            elif k == "RANK_K" and v:
                flags.append(f"rank{v}")
        tile = "x".join(str(c[k]) for k in TILE_KEYS if k in c)
        extra = f" tile={tile}" if tile else ""
        return " ".join(flags) + extra + f" w{self.options.num_warps}s{self.options.num_stages}"


def specialize(launch, backend) -> tuple:
    """(options, signature, constexprs, attrs) of a launch, as JITFunction.run makes them."""
    from triton.runtime.jit import create_function_from_signature

    kernel = launch.kernel
    kwargs = dict(launch.kwargs)
    # JITFunction.run adds these before binding (Triton 3.9).
    kwargs["debug"] = kwargs.get("debug", getattr(kernel, "debug", None)) or False
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*launch.args, **kwargs)
    return kernel._pack_args(backend, kwargs, bound, specialization, options)


def _dtype_of(launch) -> str:
    for a in launch.args:
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            return str(a.dtype).removeprefix("torch.")
    return "-"


def distinct_specs(arch: int, workloads) -> list[Spec]:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    backend = make_backend(GPUTarget("cuda", arch, 32))
    info = ARCHS[arch]
    specs: dict[str, Spec] = {}
    for workload in workloads:
        for launch in record(workload, info["target"], info["sms"]):
            options, signature, constexprs, attrs = specialize(launch, backend)
            name = launch.name
            key = repr((name, sorted(signature.items()), sorted(constexprs.items(), key=str),
                        sorted(attrs.items()), options))
            spec = specs.get(key)
            if spec is None:
                spec = specs[key] = Spec(launch.kernel, name, signature, constexprs, attrs, options, _dtype_of(launch))
            spec.launches += 1
            spec.workloads.add(workload)
    return list(specs.values())


# ------------------------------------------------------------------ compile and read back
def _tool(name: str) -> str:
    import triton

    path = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: the Triton wheel's {name} is needed to read the cubins")
    return str(path)


@dataclasses.dataclass
class Row:
    arch: int
    kernel: str
    dtype: str
    variant: str
    launches: int
    workloads: list
    registers: int
    stack: int
    local: int
    local_stores: int
    shared: int
    gemm: bool
    wants_mma: bool
    mma: str
    pipelined_loads: int
    compile_s: float
    problems: list
    # Instructions of the main loop (the longest backward-branching loop holding the
    # MMAs) per MMA instruction, each warp's count: 0 without one. A tensor-core
    # main loop is issue-bound when its warps need more issue slots than the MMAs
    # take (docs/kernels.md, "Main-loop instructions").
    loop_per_mma: float = 0.0


_SASS_OP = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")
_SASS_BACK_BRANCH = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?BRA(?:\.\w+)*\s+0x([0-9a-f]+)")


def main_loop_per_mma(sass: str) -> float:
    """Instructions per MMA instruction in the longest loop of `sass` (cuobjdump -sass)
    that holds MMAs: a loop is the code from a backward branch's target to the branch.
    0.0 when no loop holds an MMA."""
    ops = [(int(m.group(1), 16), m.group(2)) for m in _SASS_OP.finditer(sass)]
    best = None
    for m in _SASS_BACK_BRANCH.finditer(sass):
        end, start = int(m.group(1), 16), int(m.group(2), 16)
        if start >= end:
            continue
        body = [op for at, op in ops if start <= at <= end]
        mma = sum(op.startswith(("HGMMA", "HMMA")) for op in body)
        if mma and (best is None or len(body) > best[0]):
            best = (len(body), mma)
    return best[0] / best[1] if best else 0.0


def analyse(arch: int, spec: Spec) -> Row:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    t0 = time.perf_counter()
    compiled = triton.compile(ASTSource(spec.kernel, spec.signature, spec.constexprs, spec.attrs),
                              target=GPUTarget("cuda", arch, 32), options=spec.options.__dict__)
    elapsed = time.perf_counter() - t0
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        usage = subprocess.run([_tool("cuobjdump"), "-res-usage", f.name], capture_output=True, text=True,
                               check=True).stdout
        sass = subprocess.run([_tool("cuobjdump"), "-sass", f.name], capture_output=True, text=True,
                              check=True).stdout
    res = dict(re.findall(r"\b(REG|STACK|LOCAL):(\d+)", usage))
    ops = re.findall(r"^\s+/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", sass, re.M)
    count = lambda prefix: sum(op.startswith(prefix) for op in ops)  # noqa: E731
    ttir = compiled.asm["ttir"]
    gemm = "tt.dot" in ttir
    precision = spec.constants.get("DOT_PRECISION", "tf32")
    # fp32 operands reach the tensor cores only as TF32; float64 never does.
    wants_mma = gemm and (spec.dtype in ("bfloat16", "float16") or (spec.dtype == "float32" and precision == "tf32"))
    mma = "HGMMA" if count("HGMMA") else ("HMMA" if count("HMMA") else "none")
    pipelined = sum(count(p) for p in PIPELINED_LOADS)
    row = Row(arch, spec.name, spec.dtype, spec.variant(), spec.launches, sorted(spec.workloads),
              int(res.get("REG", 0)), int(res.get("STACK", 0)), int(res.get("LOCAL", 0)), count("STL"),
              int(compiled.metadata.shared), gemm, wants_mma, mma, pipelined, elapsed, [],
              main_loop_per_mma(sass))
    row.problems = judge(row)
    return row


def judge(row: Row) -> list[str]:
    """What is wrong with a compiled kernel (empty: clean)."""
    problems = []
    limit = ARCHS[row.arch]["smem_limit"]
    # A spill writes registers to local memory (STL). ptxas sometimes reserves a stack
    # frame that no instruction touches (seen: 8 B, no STL/LDL, on sm_90 fp32 convs):
    # reported in the table, not a spill.
    if row.local or row.local_stores:
        problems.append(f"spills (local {row.local} B, {row.local_stores} STL, stack frame {row.stack} B)")
    if row.shared > limit:
        problems.append(f"shared memory {row.shared} B > {limit} B")
    if row.wants_mma and row.mma == "none":
        problems.append("GEMM without tensor-core MMA")
    if row.gemm and not row.pipelined_loads:
        problems.append("GEMM main loop without cp.async/TMA loads")
    return problems


# ------------------------------------------------------------------ the table
COLUMNS = ("sm", "kernel", "dtype", "variant", "launches", "regs", "stack B", "STL", "smem KB", "MMA", "async loads",
           "loop instr / MMA", "verdict")


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = (f"sm_{r.arch}", r.kernel.lstrip("_"), r.dtype, r.variant, str(r.launches), str(r.registers),
                 str(r.stack + r.local), str(r.local_stores), f"{r.shared / 1024:.1f}",
                 r.mma if r.gemm else "-", str(r.pipelined_loads) if r.gemm else "-",
                 f"{r.loop_per_mma:.0f}" if r.loop_per_mma else "-",
                 "ok" if not r.problems else "; ".join(r.problems))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    out = []
    for arch in sorted({r.arch for r in rows}, reverse=True):
        mine = [r for r in rows if r.arch == arch]
        gemm = [r for r in mine if r.gemm]
        bad = [r for r in mine if r.problems]
        out.append(
            f"sm_{arch} ({ARCHS[arch]['gpu']}, {ARCHS[arch]['sms']} SMs): {sum(r.launches for r in mine)} launches, "
            f"{len(mine)} distinct kernels, {len(gemm)} GEMM-shaped ({sum(r.mma != 'none' for r in gemm)} with "
            f"{ARCHS[arch]['mma']}/MMA, {sum(r.pipelined_loads > 0 for r in gemm)} with async loads), "
            f"max {max((r.registers for r in mine), default=0)} registers, "
            f"max smem {max((r.shared for r in mine), default=0) / 1024:.1f} KB, "
            f"{sum(1 for r in mine if r.local or r.local_stores)} spilling: "
            f"{'CLEAN' if not bad else f'{len(bad)} FAILING'}"
        )
    return "\n".join(out)


def dtype_table(rows: list[Row]) -> str:
    """One line per architecture and operand dtype: the condensed form of the table."""
    head = ("sm", "dtype", "kernels", "launches", "GEMM", "MMA", "async loads", "max regs", "max smem KB", "spilling",
            "failing")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arch in sorted({r.arch for r in rows}, reverse=True):
        for dtype in sorted({r.dtype for r in rows if r.arch == arch}):
            mine = [r for r in rows if r.arch == arch and r.dtype == dtype]
            gemm = [r for r in mine if r.gemm]
            kinds = sorted({r.mma for r in gemm if r.mma != "none"}) or ["-"]
            cells = (f"sm_{arch}", dtype, len(mine), sum(r.launches for r in mine), len(gemm),
                     f"{'/'.join(kinds)} {sum(r.mma != 'none' for r in gemm)}/{len(gemm)}",
                     f"{sum(r.pipelined_loads > 0 for r in gemm)}/{len(gemm)}",
                     max(r.registers for r in mine), f"{max(r.shared for r in mine) / 1024:.0f}",
                     sum(1 for r in mine if r.local or r.local_stores), sum(1 for r in mine if r.problems))
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def workload_table(rows: list[Row]) -> str:
    """One line per architecture and workload: the distinct kernels its step compiles
    (a kernel shared by several workloads counts in each) and how many fail."""
    head = ("sm", "workload", "kernels", "GEMM", "MMA", "async loads", "spilling", "failing")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arch in sorted({r.arch for r in rows}, reverse=True):
        for workload in sorted({w for r in rows if r.arch == arch for w in r.workloads}):
            mine = [r for r in rows if r.arch == arch and workload in r.workloads]
            gemm = [r for r in mine if r.gemm]
            cells = (f"sm_{arch}", workload, len(mine), len(gemm), f"{sum(r.mma != 'none' for r in gemm)}/{len(gemm)}",
                     f"{sum(r.pipelined_loads > 0 for r in gemm)}/{len(gemm)}",
                     sum(1 for r in mine if r.local or r.local_stores), sum(1 for r in mine if r.problems))
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def run(archs, workloads, log=print) -> list[Row]:
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise SystemExit("run with TRITON_INTERPRET=0: the interpreter does not compile")
    rows = []
    for arch in archs:
        specs = distinct_specs(arch, workloads)
        log(f"sm_{arch}: {sum(s.launches for s in specs)} launches, {len(specs)} distinct specializations")
        for spec in sorted(specs, key=lambda s: (s.name, s.dtype, s.variant())):
            row = analyse(arch, spec)
            rows.append(row)
            log(f"  {row.kernel} {row.dtype} {row.variant}: regs {row.registers} smem {row.shared} "
                f"{row.mma} async {row.pipelined_loads} {'; '.join(row.problems) or 'ok'} ({row.compile_s:.1f} s)")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", type=int, nargs="+", choices=sorted(ARCHS), default=[90, 80])
    p.add_argument("--workload", nargs="+", choices=sorted({**WORKLOADS, **QUICK, **EXTRA}), default=list(WORKLOADS))
    p.add_argument("--json", type=pathlib.Path, help="write every row here")
    p.add_argument("--markdown", type=pathlib.Path, help="write the summary and table here")
    p.add_argument("--from-json", type=pathlib.Path, nargs="+", help="render earlier --json rows, compile nothing")
    args = p.parse_args(argv)
    if args.from_json:
        rows = [Row(**r) for path in args.from_json for r in json.loads(path.read_text())]
        for row in rows:
            row.problems = judge(row)
    else:
        rows = run(args.arch, args.workload, log=lambda s: print(s, file=sys.stderr, flush=True))
    text = summary(rows) + "\n\n" + dtype_table(rows) + "\n\n" + workload_table(rows) + "\n\n" + table(rows)
    print(text)
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 1 if any(r.problems for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
