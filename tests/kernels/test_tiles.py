"""Tile selection (kernels/_tiles.py): the shipped config files, lookup keys, the
interpreter's problem-sized tiles, the split of the weight gradient's reduction."""

import json
from importlib import resources

import pytest
import torch

from fastgan.kernels import _tiles

CPU = torch.device("cpu")


@pytest.mark.parametrize("name", _tiles.config_names())
def test_every_shipped_config_file_is_valid(name):
    table = _tiles.load_table(name)
    assert set(table) == set(_tiles.KINDS)
    for kind, entry in table.items():
        for tile in [entry["default"], *entry["by_dtype"].values(), *entry["by_shape"].values()]:
            _tiles.validate(tile, f"{name} {kind}")
        for key in [*entry["by_shape"], *entry["by_dtype"]]:
            assert key.split("_")[0] in ("fp16", "bf16", "fp32", "fp64"), key


def test_lookup_order_is_shape_then_dtype_then_default():
    """cuda_90.json: float32 convs take the fp32 entry (a 16-wide K block), 16-bit the
    default; an exact shape entry would win over both."""
    with _tiles.emulating("cuda_90", 132):
        fp32 = _tiles.pick("conv", CPU, torch.float32, 65536, 64, 48)
        bf16 = _tiles.pick("conv", CPU, torch.bfloat16, 65536, 64, 48)
    table = _tiles.load_table("cuda_90.json")["conv"]
    assert fp32 == table["by_dtype"]["fp32"] and bf16 == table["default"] and fp32 != bf16
    raw = {kind: {"default": {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}} for kind in _tiles.KINDS}
    raw["conv"]["by_dtype"] = {"fp32": {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 16}}
    raw["conv"]["by_shape"] = {"fp32_m1024_n64_k64": {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 64}}
    parsed = _tiles.parse_table(raw, "x.json", None)["conv"]
    assert parsed["by_shape"]["fp32_m1024_n64_k64"].BLOCK_M == 16 and parsed["by_dtype"]["fp32"].BLOCK_M == 32


def test_config_files_are_installed_package_data():
    names = _tiles.config_names()
    assert "default.json" in names
    raw = json.loads((resources.files("fastgan.kernels") / "configs" / "default.json").read_text())
    assert set(_tiles.KINDS) <= set(raw)


def test_a_bad_entry_names_its_file_and_kind():
    raw = {kind: {"default": {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}} for kind in _tiles.KINDS}
    raw["conv_wgrad"]["by_shape"] = {"bf16_m64_n64_k64": {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 8}}
    with pytest.raises(ValueError, match=r"configs/x.json conv_wgrad bf16_m64_n64_k64: BLOCK_K must be"):
        _tiles.parse_table(raw, "x.json", None)
    del raw["gemm"]
    raw["conv_wgrad"].pop("by_shape")
    with pytest.raises(ValueError, match=r"configs/x.json has no entry for kernel kind 'gemm'"):
        _tiles.parse_table(raw, "x.json", None)
    assert _tiles.parse_table(raw, "x.json", _tiles.load_table("default.json"))["gemm"]


def test_shape_key_buckets_by_powers_of_two_and_dtype():
    assert _tiles.shape_key(torch.bfloat16, 16384, 256, 2048) == "bf16_m16384_n256_k2048"
    assert _tiles.shape_key(torch.float16, 1000, 3, 17) == "fp16_m1024_n16_k32"
    assert _tiles.shape_key(torch.float32, 1, 1, 1) == "fp32_m16_n16_k16"


def test_interpreter_tiles_are_cut_to_the_problem_but_never_below_16():
    tile = _tiles.pick("conv", CPU, torch.float32, 50, 3, 5000)
    assert (tile.BLOCK_M, tile.BLOCK_N, tile.BLOCK_K) == (64, 16, _tiles.INTERPRETER["conv"].BLOCK_K)


def test_forced_tiles_win_and_lookups_are_recorded():
    forced = _tiles.Tile(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64)
    with _tiles.recording() as seen:
        _tiles.force("gemm", forced)
        try:
            assert _tiles.pick("gemm", CPU, torch.float16, 5, 6, 7) == forced
        finally:
            _tiles.force("gemm", None)
        assert _tiles.pick("gemm", CPU, torch.float16, 5, 6, 7) != forced
    assert seen == [("gemm", "fp16_m16_n16_k16")] * 2


def test_split_count():
    tile = _tiles.Tile(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16)
    # Interpreter: 4 pretend processors, two waves: 8 programs wanted.
    assert _tiles.split_count(tile, CPU, tiles=1, k_iters=100) == 8
    assert _tiles.split_count(tile, CPU, tiles=16, k_iters=100) == 1
    assert _tiles.split_count(tile, CPU, tiles=1, k_iters=3) == 3
    fixed = _tiles.Tile(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16, SPLIT_K=5)
    assert _tiles.split_count(fixed, CPU, tiles=1, k_iters=100) == 5
    assert _tiles.split_count(fixed, CPU, tiles=1, k_iters=2) == 2


def test_float32_dots_are_ieee_under_the_interpreter():
    assert _tiles.dot_precision(torch.float32, "conv") == "ieee"
    assert _tiles.dot_precision(torch.float32, "linear") == "ieee"


# The PyTorch settings each family follows: (new-API node, legacy flag owner).
_SETTINGS = {
    "conv": (lambda: torch.backends.cudnn.conv, lambda: torch.backends.cudnn),
    "linear": (lambda: torch.backends.cuda.matmul, lambda: torch.backends.cuda.matmul),
}


def _set_tf32(family: str, allowed: bool) -> None:
    node, legacy = (f() for f in _SETTINGS[family])
    if hasattr(node, "fp32_precision"):
        node.fp32_precision = "tf32" if allowed else "ieee"
    else:
        legacy.allow_tf32 = allowed


@pytest.fixture
def restore_precision_settings():
    saved = {f: getattr(_SETTINGS[f][0](), "fp32_precision", None) for f in _SETTINGS}
    legacy = {f: _SETTINGS[f][1]().allow_tf32 for f in _SETTINGS if saved[f] is None}
    yield
    for family, value in saved.items():
        if value is not None:
            _SETTINGS[family][0]().fp32_precision = value
        else:
            _SETTINGS[family][1]().allow_tf32 = legacy[family]


def test_float32_precision_follows_pytorch_defaults_on_a_gpu():
    """Out of the box PyTorch runs float32 convolutions with TF32 (cuDNN) and float32
    matmuls without: the kernels follow, so fuse(model) computes like the model."""
    with _tiles.emulating("cuda_90", 132):
        assert _tiles.dot_precision(torch.float32, "conv") == "tf32"
        assert _tiles.dot_precision(torch.float32, "linear") == "ieee"
        for dtype in (torch.float16, torch.bfloat16):
            assert _tiles.dot_precision(dtype, "linear") == "tf32"  # 16-bit: no choice to make


@pytest.mark.parametrize("conv_tf32", [False, True])
@pytest.mark.parametrize("linear_tf32", [False, True])
def test_float32_precision_follows_each_family_setting(restore_precision_settings, conv_tf32, linear_tf32):
    _set_tf32("conv", conv_tf32)
    _set_tf32("linear", linear_tf32)
    want = {True: "tf32", False: "ieee"}
    with _tiles.emulating("cuda_80", 108):
        assert _tiles.dot_precision(torch.float32, "conv") == want[conv_tf32]
        assert _tiles.dot_precision(torch.float32, "linear") == want[linear_tf32]
    assert _tiles.dot_precision(torch.float32, "conv") == "ieee"  # the interpreter stays exact


def test_launches_take_their_family_precision(restore_precision_settings):
    """What the launchers pass: a float32 conv (and the 1x1-input transposed conv that
    runs as a GEMM) follows cuDNN's setting, a float32 linear layer the matmul one."""
    from fastgan.bench.launches import recording_launches
    from fastgan.kernels import conv as KC
    from fastgan.kernels import linear as KL

    _set_tf32("conv", True)
    _set_tf32("linear", False)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    with _tiles.emulating("cuda_90", 132), recording_launches(execute=False) as launches:
        KC.conv_fwd(x, torch.randn(16, 8, 3, 3), None, [1, 1], [1, 1], [0, 0], False, "relu", 0.2, 1.0, None)
        KC.conv_fwd(torch.randn(2, 8, 1, 1), torch.randn(8, 16, 4, 4), None, [1, 1], [0, 0], [0, 0], True,
                    "relu", 0.2, 1.0, None)
        KL.linear_fwd(torch.randn(4, 8), torch.randn(16, 8), None, "relu", 0.2, 1.0, None)
    assert [(l.name, l.kwargs["DOT_PRECISION"]) for l in launches] == [
        ("_conv_gather_kernel", "tf32"), ("_gemm_kernel", "tf32"), ("_gemm_kernel", "ieee")]


def test_unknown_precision_family_is_an_error():
    with pytest.raises(ValueError, match="family must be one of"):
        _tiles.dot_precision(torch.float32, "attention")


# ----------------------------------------------------------------------------- autotune
@pytest.fixture
def tune_env(tmp_path, monkeypatch):
    """A fresh cache folder, an empty in-memory memo and a capture check that says no."""
    monkeypatch.setenv(_tiles.AUTOTUNE_CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(_tiles, "_tuned", {})
    monkeypatch.setattr(_tiles, "_capture_check", lambda: False)
    return tmp_path


FALLBACK = _tiles.Tile(BLOCK_M=128, BLOCK_N=64, BLOCK_K=32)
SHAPE = dict(kind="conv", dtype=torch.bfloat16, m=65536, n=128, k=1024)
WHERE = dict(gpu="cuda_90-132sm-6144bit", triton_version="3.6.0", target="cuda_90", sms=132)


class StubTimer:
    """bench(tile) -> ms from a table of made-up timings (the fastest: 64x64x64)."""

    def __init__(self):
        self.calls = []

    def __call__(self, tile):
        self.calls.append(tile)
        return 1.0 if (tile.BLOCK_M, tile.BLOCK_N, tile.BLOCK_K) == (64, 64, 64) else 2.0 + tile.BLOCK_M / 1000


def test_autotune_times_the_candidates_once_and_caches_the_fastest_on_disk(tune_env):
    timer = StubTimer()
    best = _tiles.autotuned(**SHAPE, **WHERE, bench=timer, fallback=FALLBACK)
    assert (best.BLOCK_M, best.BLOCK_N, best.BLOCK_K) == (64, 64, 64)
    assert timer.calls == _tiles.candidates("conv", torch.bfloat16, 65536, 128, 1024, target="cuda_90", sms=132)
    assert len(timer.calls) > 1
    # Again: from memory, nothing timed.
    assert _tiles.autotuned(**SHAPE, **WHERE, bench=timer, fallback=FALLBACK) == best
    assert len(timer.calls) == len(_tiles.candidates("conv", torch.bfloat16, 65536, 128, 1024, target="cuda_90",
                                                     sms=132))
    # A new process (empty memo) reads the file, keyed by GPU, Triton version and shape.
    path = _tiles.cache_path(WHERE["gpu"], WHERE["triton_version"])
    assert path.startswith(str(tune_env)) and "cuda_90-132sm-6144bit" in path and "3.6.0" in path
    assert json.loads(open(path).read()) == {"conv:bf16_m65536_n128_k1024": best.as_dict()}
    _tiles._tuned.clear()
    untimed = StubTimer()
    assert _tiles.autotuned(**SHAPE, **WHERE, bench=untimed, fallback=FALLBACK) == best and not untimed.calls


def test_autotune_keys_apart_other_gpus_versions_and_shapes(tune_env):
    _tiles.autotuned(**SHAPE, **WHERE, bench=StubTimer(), fallback=FALLBACK)
    for change in (dict(gpu="cuda_90-132sm-5120bit"), dict(triton_version="3.9.0")):
        timer = StubTimer()
        _tiles.autotuned(**SHAPE, **{**WHERE, **change}, bench=timer, fallback=FALLBACK)
        assert timer.calls, change
    timer = StubTimer()
    _tiles.autotuned(**{**SHAPE, "m": 4096}, **WHERE, bench=timer, fallback=FALLBACK)
    assert timer.calls


def test_autotune_never_times_during_graph_capture(tune_env, monkeypatch):
    monkeypatch.setattr(_tiles, "_capture_check", lambda: True)
    timer = StubTimer()
    assert _tiles.autotuned(**SHAPE, **WHERE, bench=timer, fallback=FALLBACK) == FALLBACK
    assert not timer.calls and not list(tune_env.iterdir())
    # Without a registered check it cannot know: it does not time either.
    monkeypatch.setattr(_tiles, "_capture_check", None)
    assert _tiles.autotuned(**SHAPE, **WHERE, bench=timer, fallback=FALLBACK) == FALLBACK and not timer.calls


def test_autotune_candidates_are_pruned_statically():
    # float32 operands: 4-byte elements, so the deepest 128x128x64 tiles exceed sm_80's 163 KB.
    for target, limit in (("cuda_90", 227 * 1024), ("cuda_80", 163 * 1024)):
        for kind in _tiles.KINDS:
            tiles = _tiles.candidates(kind, torch.float32, 65536, 512, 4096, target=target, sms=132, limit=100)
            assert tiles and all(_tiles.smem_bytes(t, 4) <= limit for t in tiles)
    assert len(_tiles.candidates("conv", torch.float32, 65536, 512, 4096, target="cuda_80", sms=108, limit=100)) < \
        len(_tiles.SEARCH["conv"])
    # No block larger than the problem (rounded up to a power of two).
    short = _tiles.candidates("conv", torch.bfloat16, 65536, 256, 20, target="cuda_90", sms=132, limit=100)
    assert short and all(t.BLOCK_K <= 32 for t in short)
    assert len(short) < len(_tiles.SEARCH["conv"])


def test_autotune_without_candidates_keeps_the_table_tile(tune_env):
    """A 3-output layer: every searched tile is wider than the problem; nothing to time."""
    assert _tiles.candidates("conv", torch.bfloat16, 65536, 3, 48, target="cuda_90", sms=132) == []
    timer = StubTimer()
    assert _tiles.autotuned(**{**SHAPE, "n": 3, "k": 48}, **WHERE, bench=timer, fallback=FALLBACK) == FALLBACK
    assert not timer.calls


def test_pick_autotunes_only_when_asked_on_a_gpu(tune_env, monkeypatch):
    timer = StubTimer()
    monkeypatch.setenv(_tiles.AUTOTUNE_ENV, "1")
    with _tiles.emulating("cuda_90", 132):
        _tiles.pick("conv", CPU, torch.bfloat16, 65536, 128, 1024, bench=timer)
    _tiles.pick("conv", CPU, torch.bfloat16, 65536, 128, 1024, bench=timer)
    assert not timer.calls  # emulated or on the CPU: the tables (or interpreter tiles)
