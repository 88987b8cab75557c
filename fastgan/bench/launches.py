"""Every Triton kernel launch a piece of code makes, recorded (and optionally not run).

Launch counts per training step, the host-overhead benchmark (kernels stubbed out, so
only Python and PyTorch host work is timed) and the static kernel report (each launch
compiled for sm_90 / sm_80 exactly as the JIT would specialise it) all need the same
thing: the kernel, grid and arguments of each `kernel[grid](*args, **kwargs)` call.
Triton's JIT and interpreter kernels both launch through KernelInterface.__getitem__,
which is patched for the duration of `recording_launches`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

from .._backend import stubbed_launches


@dataclass
class Launch:
    kernel: Any  # the JITFunction / InterpretedFunction launched
    grid: Any
    args: tuple
    kwargs: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        fn = getattr(self.kernel, "fn", None)
        return getattr(fn, "__name__", None) or getattr(self.kernel, "__name__", repr(self.kernel))


def _no_launch(*args, **kwargs) -> None:
    """A launch that does nothing and records nothing (record=False)."""


@contextlib.contextmanager
def recording_launches(execute: bool = True, record: bool = True) -> Iterator[list[Launch]]:
    """Yield a list that receives a Launch per Triton kernel launch made inside the
    block. execute=False replaces every launch by a no-op: outputs keep whatever the
    launchers allocated them with (so results are meaningless), but the host-side work
    (dispatch, checks, planning, allocation) runs exactly as in a real step. Since
    nothing is computed, backend 'triton' then accepts CPU tensors of any dtype without
    the interpreter (fastgan._backend.stubbed_launches). record=False (only with
    execute=False) records nothing either: each launch is a call of a function that
    does nothing, with the launcher's arguments (timing the host work around launches
    without the recording's own cost); the list stays empty."""
    from triton.runtime.jit import KernelInterface

    if not record and execute:
        raise ValueError("record=False needs execute=False: a launch that runs is always recorded")
    launches: list[Launch] = []
    original = KernelInterface.__getitem__

    def getitem(self, grid):
        def launch(*args, **kwargs):
            launches.append(Launch(self, grid, args, kwargs))
            if execute:
                return original(self, grid)(*args, **kwargs)
            return None

        return launch

    if not record:
        def getitem(self, grid):  # noqa: F811  (the non-recording stub)
            return _no_launch

    KernelInterface.__getitem__ = getitem
    try:
        with contextlib.nullcontext() if execute else stubbed_launches():
            yield launches
    finally:
        KernelInterface.__getitem__ = original
