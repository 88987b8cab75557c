"""Helpers for the kernel tests: tile configs a test forces on the launchers."""

from __future__ import annotations

import contextlib

from hypothesis import settings
from hypothesis import strategies as st

from fastgan.kernels import _tiles

# The smallest legal tiles: many programs per layer (grouped ordering, masked edges),
# channel counts >= 16 take the one-tap-per-K-block path, and the weight gradient's
# reduction is split into many slices.
SMALL = {kind: _tiles.Tile(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16, GROUP_M=2) for kind in _tiles.KINDS}


@contextlib.contextmanager
def forced_tiles(tiles: dict | None):
    """Every launch of a kind in `tiles` uses that tile (None: the interpreter's own)."""
    tiles = tiles or {}
    try:
        for kind, tile in tiles.items():
            _tiles.force(kind, tile)
        yield
    finally:
        for kind in tiles:
            _tiles.force(kind, None)


# None half the time: the interpreter's problem-sized tiles (one program, flattened K).
tile_choices = st.sampled_from([None, SMALL])


# Examples per kernel property test: 3/5 of the active profile's count (12 under the
# default profile of 20, whose full suite has to stay within a few minutes on the
# interpreter; 180 under HYPOTHESIS_PROFILE=thorough).
EXAMPLES = max(1, settings.default.max_examples * 3 // 5)
