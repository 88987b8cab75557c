"""Tile configurations for the GEMM-shaped kernels (conv and linear families).

Where a launch gets its tiles from:
- under Triton's interpreter: one fixed config per kernel kind (INTERPRETER), large
  tiles so that few programs run (each program is a Python loop over numpy arrays);
- on a GPU: the JSON file kernels/configs/<backend>_<arch>.json (for example
  cuda_90.json for H100/H200 class devices), written by benchmarks/tune_conv_tiles.py
  on the device; a layer's entry is looked up by `shape_key(m, n, k)` ("by_shape"), then
  by operand dtype ("by_dtype": fp32 operands take twice the registers and shared
  memory of 16-bit ones), then the file's "default"; a device without a file uses
  configs/default.json.

The device is named by its Triton target (backend and architecture), not by its
marketing name: that comes from Triton's driver and needs no torch.cuda call (those
break the interpreter and are kept out of kernels/). Devices of one architecture share
a file (H100 and H200 differ in memory bandwidth, not in the tile shapes that suit sm_90).

Every config is checked before use: tl.dot needs each block dimension >= 16 and a power
of two (K >= 16 is what 16-bit operands require on NVIDIA GPUs; the interpreter does not
enforce it, so it is enforced here for the interpreter's configs too).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import asdict, dataclass, replace
from importlib import resources

import torch

from ._common import emulated_gpu, emulating, interpreting  # noqa: F401  (emulating: re-exported)

# Kernel kinds with a config each: conv forward / input gradient (one kernel), conv
# weight gradient, linear forward / input gradient, linear weight gradient.
KINDS = ("conv", "conv_wgrad", "gemm", "gemm_wgrad")

# tl.dot's smallest legal block dimension for 16-bit operands on NVIDIA GPUs.
MIN_DOT_DIM = 16


@dataclass(frozen=True)
class Tile:
    BLOCK_M: int
    BLOCK_N: int
    BLOCK_K: int
    GROUP_M: int = 8
    num_warps: int = 4
    num_stages: int = 3
    # Weight-gradient kinds only: number of K splits; None lets `split_count` choose.
    SPLIT_K: int | None = None

    def launch_options(self) -> dict:
        return {"num_warps": self.num_warps, "num_stages": self.num_stages}

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _power_of_two(v: int) -> bool:
    return isinstance(v, int) and v > 0 and (v & (v - 1)) == 0


def validate(tile: Tile, where: str) -> Tile:
    """Raise ValueError naming `where` if the tile breaks a rule the kernels rely on."""
    for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K"):
        v = getattr(tile, name)
        if not _power_of_two(v) or v < MIN_DOT_DIM:
            raise ValueError(
                f"{where}: {name} must be a power of two >= {MIN_DOT_DIM} (tl.dot's smallest "
                f"block for 16-bit operands), got {v!r}"
            )
    if not (isinstance(tile.GROUP_M, int) and tile.GROUP_M >= 1):
        raise ValueError(f"{where}: GROUP_M must be a positive int, got {tile.GROUP_M!r}")
    if tile.num_warps not in (1, 2, 4, 8, 16):
        raise ValueError(f"{where}: num_warps must be 1, 2, 4, 8 or 16, got {tile.num_warps!r}")
    if not (isinstance(tile.num_stages, int) and tile.num_stages >= 1):
        raise ValueError(f"{where}: num_stages must be a positive int, got {tile.num_stages!r}")
    if tile.SPLIT_K is not None and not (isinstance(tile.SPLIT_K, int) and tile.SPLIT_K >= 1):
        raise ValueError(f"{where}: SPLIT_K must be a positive int or absent, got {tile.SPLIT_K!r}")
    return tile


def tile_from_dict(d: dict, where: str) -> Tile:
    try:
        tile = Tile(**d)
    except TypeError as e:
        raise ValueError(f"{where}: bad tile config {d!r} ({e})") from None
    return validate(tile, where)


# The interpreter's config: the largest tiles, each dimension cut down to the problem's
# (rounded up to a power of two, at least 16). The interpreter pays per Triton
# operation (a numpy call plus type checks) and per element of a tile, not per useful
# element: a tile as large as the problem means the fewest programs and loop
# iterations with the least padding, which is what makes the DCGAN-64 layer shapes
# affordable in CI. (The property tests also force small tiles, to cover the
# multi-tile and per-tap paths.)
INTERPRETER = {
    "conv": Tile(BLOCK_M=256, BLOCK_N=256, BLOCK_K=128, GROUP_M=1),
    "conv_wgrad": Tile(BLOCK_M=256, BLOCK_N=256, BLOCK_K=256, GROUP_M=1),
    "gemm": Tile(BLOCK_M=128, BLOCK_N=256, BLOCK_K=128, GROUP_M=1),
    "gemm_wgrad": Tile(BLOCK_M=128, BLOCK_N=128, BLOCK_K=128, GROUP_M=1),
}


# The interpreter pretends to have this many processors, so that the split-K choice
# (and with it the partial-sum path) is exercised by the tests.
INTERPRETER_PROCESSORS = 4


def _bucket(v: int) -> int:
    """The smallest power of two >= v (at least 16): shapes in one bucket share tiles."""
    b = 16
    while b < v:
        b *= 2
    return b


_DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64"}


def shape_key(dtype: torch.dtype, m: int, n: int, k: int) -> str:
    """The lookup key of a GEMM of m rows, n columns and reduction length k.

    The operand dtype is part of it: a tile tuned for bfloat16 may need more shared
    memory than a device has when its operands are float32.
    """
    return f"{_DTYPE_NAMES[dtype]}_m{_bucket(m)}_n{_bucket(n)}_k{_bucket(k)}"


CONFIG_PACKAGE = "fastgan.kernels"


@functools.lru_cache(maxsize=None)
def config_names() -> tuple[str, ...]:
    """File names of every shipped config table (listed once: launches look them up)."""
    folder = resources.files(CONFIG_PACKAGE) / "configs"
    return tuple(sorted(p.name for p in folder.iterdir() if p.name.endswith(".json")))


def parse_table(raw: dict, name: str, fallback: dict | None) -> dict:
    """{kind: {"default": Tile, "by_shape": {key: Tile}}} from a config file's JSON,
    every entry validated; a kind the file leaves out takes `fallback`'s entry."""
    table = {}
    for kind in KINDS:
        entry = raw.get(kind)
        if entry is None:
            if fallback is None:
                raise ValueError(f"configs/{name} has no entry for kernel kind {kind!r}")
            table[kind] = fallback[kind]
            continue
        if "default" not in entry:
            raise ValueError(f"configs/{name}: kind {kind!r} has no 'default' tile")
        table[kind] = {
            "default": tile_from_dict(entry["default"], f"configs/{name} {kind} default"),
            "by_dtype": {
                dtype: tile_from_dict(d, f"configs/{name} {kind} by_dtype {dtype}")
                for dtype, d in entry.get("by_dtype", {}).items()
            },
            "by_shape": {
                key: tile_from_dict(d, f"configs/{name} {kind} {key}")
                for key, d in entry.get("by_shape", {}).items()
            },
        }
    return table


@functools.lru_cache(maxsize=None)
def load_table(name: str) -> dict:
    """The parsed configs/<name> (kinds it leaves out come from default.json)."""
    raw = json.loads((resources.files(CONFIG_PACKAGE) / "configs" / name).read_text())
    fallback = None if name == "default.json" else load_table("default.json")
    return parse_table(raw, name, fallback)


@functools.lru_cache(maxsize=None)
def _device_info(device_index: int) -> tuple[str, int]:
    """(device key, number of multiprocessors) from Triton's driver (no torch.cuda)."""
    import triton

    drv = triton.runtime.driver.active
    target = drv.get_current_target()
    props = drv.utils.get_device_properties(device_index)
    return f"{target.backend}_{target.arch}", int(props["multiprocessor_count"])


def device_key(device: torch.device) -> str:
    return _device_info(device.index or 0)[0]


@functools.lru_cache(maxsize=None)
def _table_name_for_index(index: int) -> str:
    name = f"{_device_info(index)[0]}.json"
    return name if name in config_names() else "default.json"


def table_name_for(device: torch.device) -> str:
    """The config file used on `device`: its own, else default.json."""
    return _table_name_for_index(device.index or 0)


def _interpreter_tiles(device: torch.device) -> bool:
    return emulated_gpu() is None and (interpreting() or device.type == "cpu")


# Tiles forced by the caller (the GPU test sweep and the tuning script), per kind.
_forced: dict[str, Tile] = {}
# While `recording()` is active: the (kind, shape key) of every lookup, in order.
_recorded: list | None = None


@contextlib.contextmanager
def recording():
    """Collect the (kind, shape key) each launch looks its tile up by (the tuning script
    learns from it which keys the DCGAN layers use, with the launchers' own rule)."""
    global _recorded
    before, _recorded = _recorded, []
    try:
        yield _recorded
    finally:
        _recorded = before


def force(kind: str, tile: Tile | None) -> None:
    """Use `tile` for every launch of `kind` until force(kind, None) (tests, tuning)."""
    if tile is None:
        _forced.pop(kind, None)
    else:
        _forced[kind] = validate(tile, f"forced {kind} tile")


def _table_in_use(device: torch.device) -> str:
    """The config file pick() reads for `device`: the emulated GPU's when emulating."""
    if emulated_gpu() is not None:
        name = f"{emulated_gpu()[0]}.json"
        return name if name in config_names() else "default.json"
    return table_name_for(device)


def pick(kind: str, device: torch.device, dtype: torch.dtype, m: int, n: int, k: int, bench=None) -> Tile:
    """The tile config for a GEMM of kind `kind`, operand dtype and shape (m, n, k).

    bench: tile -> milliseconds of this very launch with that tile; given, on a GPU with
    FASTGAN_AUTOTUNE=1, the tile is tuned (autotuned) instead of read from the table."""
    if _recorded is not None:
        _recorded.append((kind, shape_key(dtype, m, n, k)))
    if kind in _forced:
        return _forced[kind]
    if _interpreter_tiles(device):
        largest = INTERPRETER[kind]
        return replace(
            largest,
            BLOCK_M=min(largest.BLOCK_M, _bucket(m)),
            BLOCK_N=min(largest.BLOCK_N, _bucket(n)),
            BLOCK_K=min(largest.BLOCK_K, _bucket(k)),
        )
    table = load_table(_table_in_use(device))[kind]
    tile = table["by_shape"].get(shape_key(dtype, m, n, k))
    if tile is None:
        tile = table.get("by_dtype", {}).get(_DTYPE_NAMES[dtype], table["default"])
    if bench is not None and autotune_enabled() and emulated_gpu() is None and device.type == "cuda":
        import triton

        index = device.index or 0
        key, sms = _device_info(index)
        tile = autotuned(kind, dtype, m, n, k, gpu=gpu_identity(index), triton_version=triton.__version__,
                         target=key, sms=sms, bench=bench, fallback=tile)
    return tile


_TILE_ARGS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "num_warps", "num_stages")


def resource_error(kernel: str, constexprs: dict, device: torch.device, error: Exception) -> RuntimeError:
    """The error raised for a launch whose tile does not fit the GPU (Triton's
    OutOfResources at launch): which tile, where tiles come from, and how to check one
    without a GPU. Seen on an H200: a tuned tile needed 258 KB of shared memory in the
    batch-norm epilogue variant of the gather kernel, 227 KB being the limit."""
    tile = {k: constexprs[k] for k in _TILE_ARGS if k in constexprs}
    forced = [kind for kind, t in _forced.items() if all(getattr(t, k) == v for k, v in tile.items())]
    if forced:
        source = f"a tile forced for {', '.join(forced)} (kernels._tiles.force)"
    elif _interpreter_tiles(device):
        source = "the interpreter's tiles (kernels/_tiles.py, INTERPRETER)"
    else:
        source = f"kernels/configs/{_table_in_use(device)}"
    return RuntimeError(
        f"{kernel}: the tile {tile} does not fit this GPU: {error} The tile comes from {source} "
        f"(or FASTGAN_AUTOTUNE's cache); give that shape a smaller tile. "
        f"`python benchmarks/tune_conv_tiles.py --vet conv conv_wgrad` compiles candidate tiles in a training "
        f"step's own kernel variants without a GPU.")


def processors(device: torch.device) -> int:
    if emulated_gpu() is not None:
        return emulated_gpu()[1]
    if interpreting() or device.type == "cpu":
        return INTERPRETER_PROCESSORS
    return _device_info(device.index or 0)[1]


def split_count(tile: Tile, device: torch.device, tiles: int, k_iters: int, min_iters: int = 4) -> int:
    """How many slices the weight gradient's long reduction is cut into.

    The weight gradient's output is small (weight-sized) while its reduction runs over
    every output position, so without a split a handful of programs would do all the
    work. Aim for about two waves of programs, each slice at least `min_iters` K blocks
    long so the partial sums (written in float32, then reduced) stay cheap.
    """
    if tile.SPLIT_K is not None:
        return max(1, min(tile.SPLIT_K, k_iters))
    if _interpreter_tiles(device):
        min_iters = 1
    want = -(-2 * processors(device) // max(tiles, 1))
    return max(1, min(want, k_iters // min_iters))


# Which PyTorch setting a float32 product of each op family follows: the one the eager
# op it replaces follows. Convolutions run on cuDNN (TF32 allowed by default),
# linear layers on cuBLAS matmul (TF32 off by default).
PRECISION_FAMILIES = ("conv", "linear")


# The fp32_precision settings nodes of each family, most specific first, as
# (backend, op) of torch._C's getter: torch.backends.cudnn.conv, torch.backends.cudnn,
# torch.backends for conv; torch.backends.cuda.matmul, torch.backends for linear.
_PRECISION_NODES = {
    "conv": (("cuda", "conv"), ("cuda", "all"), ("generic", "all")),
    "linear": (("cuda", "matmul"), ("generic", "all")),
}
# torch._C's reader behind those attributes (PyTorch 2.9+; None before): read directly,
# since every launch plan looks the settings up and the attribute path costs
# microseconds per read (module __getattr__, property objects).
_read_precision = getattr(torch._C, "_get_fp32_precision_getter", None)


def tf32_allowed(family: str) -> bool:
    """Whether PyTorch lets the eager op of `family` use TF32 for float32 operands.

    conv: torch.backends.cudnn.conv.fp32_precision (then cudnn, then torch.backends),
    or on an older PyTorch torch.backends.cudnn.allow_tf32; linear:
    torch.backends.cuda.matmul.fp32_precision (then torch.backends), or
    torch.backends.cuda.matmul.allow_tf32. The first explicit value ('tf32', 'ieee')
    walking from the most specific node decides; 'none' everywhere means no TF32. The
    new API is read first: PyTorch raises when the legacy flag is read after the two
    APIs were mixed.
    """
    nodes = _PRECISION_NODES.get(family)
    if nodes is None:
        raise ValueError(f"family must be one of {PRECISION_FAMILIES}, got {family!r}")
    if _read_precision is None:
        return torch._C._get_cudnn_allow_tf32() if family == "conv" else torch._C._get_cublas_allow_tf32()
    for backend, op in nodes:
        value = _read_precision(backend, op)
        if value != "none":
            return value == "tf32"
    return False


def precision_settings() -> tuple:
    """Every setting tf32_allowed reads, for both families, as one tuple: what a cached
    launch plan's key holds (read on every launch, so read directly)."""
    if _read_precision is None:
        return torch._C._get_cudnn_allow_tf32(), torch._C._get_cublas_allow_tf32()
    read = _read_precision
    return read("cuda", "conv"), read("cuda", "all"), read("generic", "all"), read("cuda", "matmul")


def dot_precision(dtype: torch.dtype, family: str = "linear") -> str:
    """input_precision for tl.dot on operands of `dtype` in an op of `family`.

    float32: 'ieee' under the interpreter; on a GPU (or while emulating() one) 'tf32'
    exactly when PyTorch allows TF32 for the eager op the kernel replaces
    (tf32_allowed): a float32 model computes what it computes unfused, TF32 convs by
    default like cuDNN's, ieee linear layers by default like cuBLAS's. TF32 rounds the
    operands to 10 mantissa bits: the float32 tolerance with a tf32 dot is
    5e-3 (1e-5 with ieee). 16-bit and float64 operands ignore the setting ('tf32' is
    Triton's default value).
    """
    if family not in PRECISION_FAMILIES:
        raise ValueError(f"family must be one of {PRECISION_FAMILIES}, got {family!r}")
    if dtype != torch.float32:
        return "tf32"
    if interpreting() and emulated_gpu() is None:
        return "ieee"
    return "tf32" if tf32_allowed(family) else "ieee"


# ----------------------------------------------------------------------------- autotune
# Opt-in (FASTGAN_AUTOTUNE=1) run-time selection on the device: for a launch whose
# (kind, shape key) has no cached winner, the statically pruned candidates below are
# timed on the launch itself and the fastest is kept, in memory and in an on-disk JSON
# cache keyed by GPU, Triton version and shape. Never inside CUDA-graph capture (a timed
# launch there would be recorded into the graph): the capture test is a torch.cuda call,
# which kernels/ does not make; fastgan registers it (set_capture_check) from outside.
AUTOTUNE_ENV = "FASTGAN_AUTOTUNE"
AUTOTUNE_CACHE_ENV = "FASTGAN_AUTOTUNE_CACHE"
# Candidates timed per shape (the best by the cost model); FASTGAN_AUTOTUNE_CANDIDATES.
AUTOTUNE_CANDIDATES = 6
# Largest dynamic shared memory per block, by Triton target.
SMEM_LIMITS = {"cuda_90": 227 * 1024, "cuda_80": 163 * 1024, "cuda_89": 99 * 1024, "cuda_86": 99 * 1024}

# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) searched per kind.
SEARCH = {
    "conv": [(128, 64, 32, 8, 3), (128, 128, 32, 8, 3), (64, 128, 32, 4, 3), (128, 64, 64, 8, 3),
             (64, 64, 32, 4, 4), (256, 64, 32, 8, 3), (128, 128, 64, 8, 3), (64, 64, 64, 4, 3)],
    "conv_wgrad": [(64, 64, 64, 8, 3), (128, 64, 64, 8, 3), (64, 128, 64, 8, 3), (128, 128, 32, 8, 3),
                   (64, 64, 128, 8, 3), (128, 128, 64, 8, 3)],
    "gemm": [(64, 64, 32, 4, 3), (128, 64, 32, 4, 3), (64, 128, 32, 4, 3), (128, 128, 32, 8, 3),
             (128, 128, 64, 8, 3), (64, 64, 64, 4, 4)],
    "gemm_wgrad": [(64, 64, 64, 4, 3), (128, 64, 64, 8, 3), (64, 128, 64, 8, 3), (128, 128, 64, 8, 3),
                   (64, 64, 128, 4, 3)],
}

_capture_check = None
_tuned: dict[tuple, Tile] = {}


def set_capture_check(fn) -> None:
    """Register the callable that says whether the current stream is capturing a CUDA
    graph (fastgan registers torch.cuda.is_current_stream_capturing)."""
    global _capture_check
    _capture_check = fn


def autotune_enabled() -> bool:
    return os.environ.get(AUTOTUNE_ENV, "0") == "1"


def smem_bytes(tile: Tile, element_bytes: int) -> int:
    """Shared memory of the pipelined operand tiles (the epilogue reuses it)."""
    return tile.num_stages * (tile.BLOCK_M + tile.BLOCK_N) * tile.BLOCK_K * element_bytes


def estimated_cost(tile: Tile, m: int, n: int, k: int, element_bytes: int, sms: int, smem_limit: int) -> float:
    """The cost model (docs/kernels.md), in units of one tile's multiply-adds: waves of
    programs over the SMs (as many blocks per SM as shared memory allows, at most 2 with
    8 warps, 4 with 4), each wave costing a full tile however little of it is useful,
    stretched by the bytes each multiply-add loads (element bytes x (1/BM + 1/BN)) over
    the 0.05 B per multiply-add that the L2 keeps up with."""
    programs = -(-m // tile.BLOCK_M) * -(-n // tile.BLOCK_N)
    per_sm = max(1, min(smem_limit // max(smem_bytes(tile, element_bytes), 1), 16 // tile.num_warps))
    waves = -(-programs // (sms * per_sm))
    bytes_per_mac = element_bytes * (1 / tile.BLOCK_M + 1 / tile.BLOCK_N)
    return waves * tile.BLOCK_M * tile.BLOCK_N * k / per_sm * max(1.0, bytes_per_mac / 0.05)


def candidates(kind: str, dtype: torch.dtype, m: int, n: int, k: int, *, target: str, sms: int,
               limit: int | None = None) -> list[Tile]:
    """Tiles worth timing for one launch, best first by the cost model: only those whose
    operand tiles fit the target's shared memory and whose blocks are no larger than
    the problem (rounded up to a power of two)."""
    element_bytes = torch.empty(0, dtype=dtype).element_size()
    smem_limit = SMEM_LIMITS.get(target, 99 * 1024)
    out = []
    for bm, bn, bk, warps, stages in SEARCH[kind]:
        tile = Tile(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=1 if kind.endswith("wgrad") else 8,
                    num_warps=warps, num_stages=stages)
        if smem_bytes(tile, element_bytes) > smem_limit:
            continue
        if bm > _bucket(m) or bn > _bucket(n) or bk > _bucket(k):
            continue
        out.append(tile)
    out.sort(key=lambda t: estimated_cost(t, m, n, k, element_bytes, sms, smem_limit))
    limit = limit or int(os.environ.get("FASTGAN_AUTOTUNE_CANDIDATES", AUTOTUNE_CANDIDATES))
    return out[:limit]


def cache_path(gpu: str, triton_version: str) -> str:
    folder = os.environ.get(AUTOTUNE_CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "fastgan")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in f"{gpu}_triton-{triton_version}")
    return os.path.join(folder, f"tiles_{safe}.json")


def _read_cache(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_cache(path: str, entries: dict) -> None:
    """Atomic: a concurrent reader sees the old file or the new one, never half of one."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(entries, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def autotuned(kind: str, dtype: torch.dtype, m: int, n: int, k: int, *, gpu: str, triton_version: str,
              target: str, sms: int, bench, fallback: Tile) -> Tile:
    """The tuned tile of one launch: the cached winner for (gpu, Triton version, kind,
    shape key), else the fastest of `candidates` as timed by bench(tile) -> ms (stored),
    else `fallback` while a CUDA graph is being captured (nothing timed or stored)."""
    key = f"{kind}:{shape_key(dtype, m, n, k)}"
    memo = (gpu, triton_version, key)
    if memo in _tuned:
        return _tuned[memo]
    path = cache_path(gpu, triton_version)
    stored = _read_cache(path).get(key)
    if stored is not None:
        try:
            tile = _tuned[memo] = tile_from_dict(stored, f"{path} {key}")
            return tile
        except ValueError:
            pass  # a stale or foreign entry: tune again
    if _capture_check is None or _capture_check():
        return fallback
    timed = [(bench(tile), i, tile) for i, tile in enumerate(candidates(kind, dtype, m, n, k, target=target, sms=sms))]
    if not timed:
        return fallback
    best = min(timed)[2]
    _tuned[memo] = best
    entries = _read_cache(path)
    entries[key] = best.as_dict()
    _write_cache(path, entries)
    return best


def launch_timer(run):
    """bench for pick(): tile -> median milliseconds of run(tile) (triton.testing.do_bench:
    warm-up first, so compiling a candidate is not timed)."""

    def bench(tile: Tile) -> float:
        import triton.testing

        return triton.testing.do_bench(lambda: run(tile), warmup=5, rep=25, return_mode="median")

    return bench


@functools.lru_cache(maxsize=None)
def gpu_identity(device_index: int) -> str:
    """The GPU as the autotune cache names it, from Triton's driver (no torch.cuda):
    target, SM count and memory bus width (an H100 and an H200 differ in the last)."""
    import triton

    props = triton.runtime.driver.active.utils.get_device_properties(device_index)
    key, sms = _device_info(device_index)
    return f"{key}-{sms}sm-{props.get('mem_bus_width', 0)}bit"
