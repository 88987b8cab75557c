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
        for tile in [entry["default"], *entry["by_shape"].values()]:
            _tiles.validate(tile, f"{name} {kind}")
        for key in entry["by_shape"]:
            assert key.split("_")[0] in ("fp16", "bf16", "fp32", "fp64"), key


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
    assert _tiles.dot_precision(torch.float32) == "ieee"
