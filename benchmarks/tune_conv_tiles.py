"""Tune the conv kernels' tiles for this GPU on the DCGAN-64 layer shapes and write
kernels/configs/<backend>_<arch>.json (cuda_90.json on an H100 or H200).

For every DCGAN-64 conv layer (tests/dcgan.py) at batch 256, bfloat16, channels_last,
and each of its three kernel launches (forward, input gradient, weight gradient), the
launcher's own lookup key is recorded (kernels/_tiles.recording), each candidate tile
is forced on the launches sharing that key, timed with triton.testing.do_bench
(median, warm-up excluded) and checked against the default tile's result; the fastest
correct tile per key is written to the file's "by_shape" table (under the bf16 key and
the fp16 key: same element size, same shared memory), keeping entries already there
for other keys. Kinds and defaults not tuned here come from configs/default.json.

One command on a CUDA machine (from the repository root):
    .venv/bin/python benchmarks/tune_conv_tiles.py [--layers G1,D1] [--max-configs 4]
Compiling is most of the time (every tile is a new kernel per specialization): with
the default candidates a full run takes several minutes; --layers splits it into
parts (each run merges its winners into the file). --dry-run prints without writing.
--compile-only runs every candidate once (compile, launch, check) and times nothing:
benchmarks/run_device.sh runs one such process per layer at once, so that the timed
pass, alone on the GPU, finds every kernel in Triton's cache.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
from importlib import resources

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "kernels"))
from dcgan import layer_shapes  # noqa: E402

OPS = ("fwd", "dgrad", "wgrad")

# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages): the grids searched, per kind, after
# the shipped default (candidates()). Only tiles that `--vet` found clean in the
# DCGAN-64 bf16 step's own variants on sm_90 with Triton 3.6, the device's version
# (2026-12-04). Left out, each spilling in the step's batch-norm epilogue or fold
# variants: conv 128x128x64 w8s3, 128x64x64 w4s3, 128x256x64 w8s3 (466 STL),
# 256x128x64 w8s3 (also 258 KB of shared memory: the launch failed on the H200),
# 128x64x32 w4s4; conv_wgrad 128x128x64 w8s3, 128x64x64 w4s3, 64x128x64 w4s3,
# 128x128x32 w8s4, 64x64x128 w4s3. Rerun `--vet conv conv_wgrad` when the kernels change.
CONV_GRID = [(64, 128, 64, 4, 3), (128, 128, 32, 8, 4), (64, 64, 64, 4, 4)]
WGRAD_GRID = [(64, 64, 64, 4, 3)]
SMEM_LIMIT = 227 * 1024  # sm_90's per-block maximum; configs beyond it fail to launch
SHIPPED_TABLE = "cuda_90.json"


def smem_estimate(block_m, block_n, block_k, stages, element_bytes) -> int:
    """Shared memory for the pipelined operand tiles (the epilogue reuses it)."""
    return stages * (block_m * block_k + block_k * block_n) * element_bytes


def candidates(kind: str, element_bytes: int = 2, smem_limit: int = SMEM_LIMIT, max_configs: int | None = None):
    from fastgan.kernels import _tiles

    grid = WGRAD_GRID if kind == "conv_wgrad" else CONV_GRID
    # The tile the device's table ships today comes first: the baseline every candidate
    # is timed against (the H200 search of 2026-12-04 had none).
    shipped = _tiles.load_table(SHIPPED_TABLE)[kind]["default"]
    first = (shipped.BLOCK_M, shipped.BLOCK_N, shipped.BLOCK_K, shipped.num_warps, shipped.num_stages)
    grid = [first] + [g for g in grid if g != first]
    out = []
    for bm, bn, bk, warps, stages in grid:
        if smem_estimate(bm, bn, bk, stages, element_bytes) > smem_limit:
            continue
        group = 1 if kind == "conv_wgrad" else 8
        out.append(_tiles.validate(_tiles.Tile(bm, bn, bk, group, warps, stages), f"candidate {kind}"))
    return out[:max_configs] if max_configs else out


# The kernel each tile kind configures.
KERNEL_OF = {"conv": "_conv_gather_kernel", "conv_wgrad": "_conv_wgrad_kernel", "gemm": "_gemm_kernel"}


def vet(kind: str, tile, *, workload: str = "dcgan-bf16", arch: int = 90) -> list[str]:
    """What goes wrong when `tile` runs every launch of `kind` in a real training step:
    the step's own kernel variants (batch-norm epilogues and prologues, activation
    derivatives) with that tile, compiled for sm_<arch> and read back by the static
    report (tests/kernels/static_report.py: spills, shared memory, MMA, async loads).
    The timed search runs only the layers' bias + activation variant, which needs fewer
    registers and less shared memory than the step's: on an H200 (2026-12-04) tiles it
    chose spilled hundreds of registers in the step's variants and one needed 258 KB of
    shared memory, so that the step failed to launch. Works without a GPU."""
    import static_report
    from fastgan.kernels import _tiles

    _tiles.force(kind, tile)
    try:
        specs = [s for s in static_report.distinct_specs(arch, [workload]) if s.name == KERNEL_OF[kind]]
    finally:
        _tiles.force(kind, None)
    problems = []
    for spec in specs:
        row = static_report.analyse(arch, spec)
        problems += [f"{row.variant}: {p}" for p in row.problems]
    return problems


def build_table(existing: dict | None, winners: dict, meta: dict) -> dict:
    """The config file's JSON: `existing` (or nothing) updated with `winners`
    {kind: {bf16 key: Tile}}; each bf16 entry is copied to the fp16 key."""
    from fastgan.kernels import _tiles

    table = dict(existing or {})
    # Under "tuned": the file's own "about" (why its defaults are what they are) stays.
    table["tuned"] = dict(meta)
    default = json.loads((resources.files(_tiles.CONFIG_PACKAGE) / "configs" / "default.json").read_text())
    for kind in _tiles.KINDS:
        entry = dict(table.get(kind) or {"default": default[kind]["default"]})
        by_shape = dict(entry.get("by_shape", {}))
        for key, tile in winners.get(kind, {}).items():
            by_shape[key] = tile.as_dict()
            if key.startswith("bf16_"):
                by_shape["fp16_" + key[len("bf16_"):]] = tile.as_dict()
        if by_shape:
            entry["by_shape"] = dict(sorted(by_shape.items()))
        table[kind] = entry
    _tiles.parse_table(table, "tuned", None)  # every entry valid, or raise before writing
    return table


def layer_calls(name, transposed, x_shape, w_shape, stride, padding, dtype, device="cuda"):
    """{op: zero-argument function running that launch} for one layer, on the GPU."""
    from fastgan.kernels import conv as KC

    from bench_conv_layers import layer_act

    act = layer_act(name)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(*x_shape, device=device, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    w = (torch.randn(*w_shape, device=device, generator=gen) * 0.05).to(dtype).contiguous(memory_format=torch.channels_last)
    b = torch.randn(w_shape[1] if transposed else w_shape[0], device=device, generator=gen).to(dtype)
    geo = ([stride, stride], [padding, padding])
    y, _ = KC.conv_fwd(x, w, b, *geo, [0, 0], transposed, act, 0.2, 1.0, None)
    g = torch.randn(y.shape, device=device, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    calls = {
        "fwd": lambda: KC.conv_fwd(x, w, b, *geo, [0, 0], transposed, act, 0.2, 1.0, None)[0],
        "wgrad": lambda: KC.conv_grad_weight(g, y, x, w_shape[2:], *geo, transposed, act, 0.2, 1.0, None, True)[0],
    }
    if name != "G0":  # the latent needs no gradient
        calls["dgrad"] = lambda: KC.conv_grad_input(g, y, w, x_shape[2:], *geo, transposed, act, 0.2, 1.0, None)
    return calls


def tune(layers, dtype, max_configs, do_bench, log=print, device="cuda", on_winner=None):
    """{kind: {key: fastest correct Tile}}; on_winner(winners so far) after each key, so
    that a run stopped at a time limit keeps the keys it finished."""
    from fastgan.kernels import _tiles

    groups: dict = {}
    for layer in layers:
        for op, call in layer_calls(*layer, dtype, device).items():
            with _tiles.recording() as seen:
                reference = call()
            kind, key = seen[0]
            groups.setdefault((kind, key), []).append((f"{layer[0]}.{op}", call, reference))
    winners: dict = {}
    for (kind, key), members in groups.items():
        best = shipped_ms = None
        for index, tile in enumerate(candidates(kind, torch.finfo(dtype).bits // 8, max_configs=max_configs)):
            _tiles.force(kind, tile)
            try:
                total = 0.0
                for label, call, reference in members:
                    out = call()
                    err = ((out.double() - reference.double()).norm() / reference.double().norm().clamp_min(1e-30)).item()
                    if not err < 2e-2:
                        raise ValueError(f"{label}: relative error {err:.3g} against the default tile")
                    total += do_bench(call, warmup=10, rep=50, return_mode="median")
            except Exception as e:  # a candidate that fails to compile, to launch or to agree: next one
                log(f"  {kind} {key} {tile.as_dict()}: skipped ({type(e).__name__}: {str(e)[:120]})")
                continue
            finally:
                _tiles.force(kind, None)
            log(f"  {kind} {key} {[m[0] for m in members]} {tile.as_dict()}: {total:.4f} ms")
            if index == 0:
                shipped_ms = total  # candidates() puts the shipped default first
            if best is None or total < best[0]:
                best = (total, tile)
        if best is not None:
            winners.setdefault(kind, {})[key] = best[1]
            against = f" ({shipped_ms / best[0]:.2f}x the shipped default)" if shipped_ms else ""
            log(f"{kind} {key}: best {best[1].as_dict()} {best[0]:.4f} ms{against}")
            if on_winner is not None:
                on_winner(winners)
    return winners


def vet_candidates(kinds, log=print) -> int:
    """--vet: every candidate of each kind, clean or with its problems; 1 if any failed."""
    failed = 0
    for kind in kinds:
        for tile in candidates("conv" if kind == "gemm" else kind):
            problems = vet(kind, tile)
            failed += bool(problems)
            log(f"{kind} {tile.as_dict()}: " + ("clean" if not problems else "; ".join(problems)))
    return int(failed > 0)


def run_once(fn, **_) -> float:
    """do_bench's stand-in for --compile-only: one call, no time."""
    fn()
    return 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--layers", default="", help="comma-separated layer names (default: all)")
    parser.add_argument("--max-configs", type=int, default=None, help="try only the first N candidates per kind")
    parser.add_argument("--dry-run", action="store_true", help="print the table instead of writing it")
    parser.add_argument("--compile-only", action="store_true",
                        help="compile, run and check every candidate once; time nothing, write nothing")
    parser.add_argument("--vet", nargs="+", choices=sorted(KERNEL_OF), metavar="KIND",
                        help="instead: compile the DCGAN-64 bf16 step's own variants of each candidate tile of "
                        "these kinds (conv, conv_wgrad, gemm) for sm_90 and print what goes wrong (no GPU needed)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        parser.error("TRITON_INTERPRET=1: tuning and vetting need compiled kernels; unset it")
    if args.vet:
        return vet_candidates(args.vet)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device")
    import triton
    from triton.testing import do_bench

    from fastgan.kernels import _tiles

    wanted = {s for s in args.layers.split(",") if s}
    layers = [s for s in layer_shapes(args.batch) if not wanted or s[0] in wanted]
    if args.compile_only:
        tune(layers, torch.bfloat16, args.max_configs, run_once)
        return 0
    device = torch.device("cuda")
    path = ROOT / "kernels" / "configs" / f"{_tiles.device_key(device)}.json"
    existing = json.loads(path.read_text()) if path.exists() else None
    meta = {
        "about": "by_shape tiles tuned by benchmarks/tune_conv_tiles.py on the DCGAN-64 layers "
                 f"(batch {args.batch}, bf16, channels_last); check them with --vet before shipping.",
        "tuned_on": torch.cuda.get_device_name(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": triton.__version__,
    }

    def save(winners) -> None:
        text = json.dumps(build_table(existing, winners, meta), indent=1) + "\n"
        if args.dry_run:
            print(text)
        else:  # after every key: a run stopped at a time limit keeps what it finished
            path.write_text(text)
            print(f"wrote {path}", flush=True)

    save(tune(layers, torch.bfloat16, args.max_configs, do_bench, on_winner=None if args.dry_run else save))
    return 0


if __name__ == "__main__":
    sys.exit(main())
