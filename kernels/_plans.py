"""Launch plans cached per call signature, so that repeated training steps skip the
launchers' checks and planning.

A plan is everything a launcher derives from its arguments' metadata (shapes,
strides, dtypes, devices and plain parameters): the checks they pass, output shapes,
tile, grid, and the kernel's scalar and constexpr arguments. The key is that metadata
plus the global state that tile choice reads (an emulated GPU, forced tiles, TF32), so a
cached plan is exactly what planning again would produce. While tile lookups are being
recorded (_tiles.recording, the tuning script) nothing is cached: every launch plans.
The launch programs of kernels._program (a layer chain's whole forward or backward,
recorded once and replayed without its launchers) are kept here too, under the same
state, and cleared with the plans.
"""

from __future__ import annotations

import os
import threading

import torch

from . import _common, _tiles
from ._common import emulated_gpu, interpreting

_plans: dict = {}
# Dynamic shapes could grow the table without bound: it is cleared when full.
MAX_PLANS = 4096


def meta(t: torch.Tensor | None):
    """What a plan may depend on of a tensor argument."""
    return None if t is None else (t.shape, t.stride(), t.dtype, t.device)


# The state, read once for a run of launches that nothing can change it in between
# (freeze / thaw around a layer chain's forward or backward); per thread.
_frozen = threading.local()


class Tape:
    """The plans of a run of launches, in launch order, for one signature of the run
    (a layer chain's forward or backward: fastgan.ops.chain). Every tensor such a run
    hands a launcher is either one of the run's inputs, whose metadata is in that
    signature, or made by an earlier launch of the run from them, so the same
    signature asks for the same plans in the same order: the run records them once,
    then replays them instead of building a key per launch. Each entry carries its
    launcher's name; a replay that meets another launcher stops replaying (the rest of
    the run plans as usual) and the tape is dropped."""

    __slots__ = ("key", "entries", "pos", "recording", "broken", "expected", "generation")

    def __init__(self, key, entries=None):
        self.key = key
        self.recording = entries is None
        self.entries = [] if entries is None else entries
        self.pos = 0
        self.broken = False
        self.expected = None
        self.generation = _generation


# Replays are checked against the keyed lookup (tests set FASTGAN_CHECK_TAPES=1): a
# signature that missed something a plan depends on fails there, not silently.
CHECK_TAPES = os.environ.get("FASTGAN_CHECK_TAPES", "0") == "1"
_tapes: dict = {}
_generation = 0  # counts the clears of the plan cache
# Launch programs (kernels._program) per run key; FASTGAN_LAUNCH_PROGRAMS=0 turns them off.
programs: dict = {}
PROGRAMS = os.environ.get("FASTGAN_LAUNCH_PROGRAMS", "1") != "0"


def program_key(signature):
    """The key of a run's launch program: its signature (as for a tape), the state
    plans depend on, and whether outputs are poisoned (fills are part of a program);
    None when nothing may be cached (tile lookups being recorded) or programs are off."""
    if not PROGRAMS:
        return None
    state = _state()
    return None if state is None else (signature, state, _common._poison)


def freeze(signature=None):
    """Read the global state once for the launches until thaw(token): a chain of layers
    plans many launches in a row, and reading the settings costs more than a lookup.
    With a signature (hashable: everything the run's plans depend on besides that
    state), the run records its plans on a tape or replays the tape recorded for it."""
    token = (getattr(_frozen, "state", None), getattr(_frozen, "tape", None))
    state = _frozen.state = _state()
    tape = None
    if signature is not None and state is not None:
        key = (signature, state)
        tape = Tape(key, _tapes.get(key))
    _frozen.tape = tape
    return token


def thaw(token, completed: bool = True) -> None:
    """End the run begun by freeze: a tape recorded by a run that completed is kept;
    one whose replay met another launcher is dropped."""
    tape = getattr(_frozen, "tape", None)
    _frozen.state, _frozen.tape = token
    if tape is None:
        return
    if tape.recording:
        if completed:
            if len(_tapes) >= MAX_PLANS:
                _tapes.clear()
            _tapes[tape.key] = tape.entries
    elif tape.broken or (completed and tape.pos != len(tape.entries)):
        _tapes.pop(tape.key, None)  # rare: a signature that did not pin its launches down


def replay(name: str):
    """The next plan on the tape being replayed, when it is `name`'s; else None (the
    launcher plans with its key, then calls record)."""
    tape = getattr(_frozen, "tape", None)
    if tape is None or tape.recording or tape.broken:
        return None
    pos = tape.pos
    if pos < len(tape.entries) and tape.entries[pos][0] == name:
        tape.pos = pos + 1
        if CHECK_TAPES:
            tape.expected = tape.entries[pos][1]
            return None
        return tape.entries[pos][1]
    tape.broken = True
    return None


def record(name: str, plan):
    """`plan`, which launcher `name` just looked up with its key, onto the tape being
    recorded (checked against the replayed one under CHECK_TAPES)."""
    tape = getattr(_frozen, "tape", None)
    if tape is not None:
        if tape.recording:
            tape.entries.append((name, plan))
        elif tape.expected is not None:
            expected, tape.expected = tape.expected, None
            # (after a clear the keys give new plan objects: nothing to compare with)
            if expected is not plan and tape.generation == _generation:
                raise AssertionError(f"launch plan tape replayed another plan for {name} than its key gives")
    return plan


def _state():
    frozen = getattr(_frozen, "state", None)
    if frozen is not None:
        return frozen
    if _tiles._recorded is not None:
        return None
    # The float32 dot precision of convs (cuDNN's setting) and linear layers (cuBLAS's):
    # every node tf32_allowed reads.
    return (emulated_gpu(), interpreting(), tuple(_tiles._forced.items()) if _tiles._forced else (),
            _tiles.precision_settings())


def get(key):
    """The plan cached for key (a tuple), or None."""
    state = _state()
    return None if state is None else _plans.get((key, state))


def put(key, plan):
    state = _state()
    if state is not None:
        if len(_plans) >= MAX_PLANS:
            clear()
        _plans[(key, state)] = plan
    return plan


def clear() -> None:
    global _generation
    _plans.clear()
    _tapes.clear()
    programs.clear()
    _generation += 1


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for host ints (triton.cdiv is a constexpr function, slow on the host)."""
    return -(-a // b)
