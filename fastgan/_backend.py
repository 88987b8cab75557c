"""Which implementation an op runs: Triton kernels or the pure-PyTorch reference.

The choice is made per call, inside each custom op, from the tensors it receives, so a
model traced by torch.compile still follows `set_backend` at run time.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
from typing import Iterator

import torch

from ._dtypes import interpreting

BACKENDS = ("auto", "triton", "reference")
_ENV_VAR = "FASTGAN_BACKEND"


def _validate(name: object) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


def _initial() -> str:
    value = os.environ.get(_ENV_VAR, "auto")
    try:
        return _validate(value)
    except ValueError:
        raise ValueError(
            f"environment variable {_ENV_VAR} must be one of {BACKENDS}, got {value!r}"
        ) from None


_current = _initial()

def get_backend() -> str:
    """The backend in force: 'auto', 'triton' or 'reference'."""
    return _current


def set_backend(name: str) -> None:
    """Choose the backend for every fastgan op from now on.

    'auto': Triton kernels for CUDA tensors, the reference for everything else.
    'triton': Triton kernels always (CPU tensors need TRITON_INTERPRET=1).
    'reference': pure PyTorch always.
    """
    global _current
    _current = _validate(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager form of `set_backend`; restores the previous backend on exit."""
    global _current
    previous = _current
    _current = _validate(name)
    try:
        yield
    finally:
        _current = previous


_KERNELS_COMMON = "fastgan.kernels._common"


def interpreter_enabled() -> bool:
    """True when Triton runs kernels through its CPU interpreter: once fastgan's kernels
    are imported, the mode they were decorated in (Triton reads TRITON_INTERPRET then,
    and never again); before, the environment variable."""
    common = sys.modules.get(_KERNELS_COMMON)
    if common is not None:
        return common.interpreting()
    return interpreting()


# True while Triton launches are recorded and never executed
# (fastgan.bench.launches.recording_launches(execute=False)): no kernel computes
# anything, so neither the interpreter nor its missing bfloat16 math matters.
_launches_stubbed = False


def launches_stubbed() -> bool:
    return _launches_stubbed


@contextlib.contextmanager
def stubbed_launches() -> Iterator[None]:
    """Let backend 'triton' take CPU tensors of any dtype, without the interpreter, for
    code whose every Triton launch is intercepted and not run (launch recording: the
    static kernel report compiles what a GPU step would launch)."""
    global _launches_stubbed
    previous, _launches_stubbed = _launches_stubbed, True
    try:
        yield
    finally:
        _launches_stubbed = previous


def cpu_kernels_allowed() -> bool:
    """Whether backend 'triton' may take CPU tensors: under the interpreter, or when
    launches are stubbed out."""
    return interpreter_enabled() or _launches_stubbed


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def _empty_problem(tensors) -> bool:
    """True when the op has nothing to compute: one of its inputs holds no elements.

    Not counted: a 1-D zero-length tensor with a tensor of 2 or more dimensions both
    before and after it. That is the ops' "not computed" stand-in, passed as
    (grad, saved, weight) or (grad, saved, x) when the act needs no saved output; real
    inputs that can be 1-D (logits, bias) never sit there.
    """
    present = [t for t in tensors if t is not None]
    matrices = [u.dim() >= 2 for u in present]
    for i, t in enumerate(present):
        if t.numel() != 0:
            continue
        if t.dim() != 1 or not (True in matrices[:i] and True in matrices[i + 1:]):
            return True
    return False


def resolve(*tensors: torch.Tensor | None) -> str:
    """'triton' or 'reference' for an op whose inputs are `tensors`.

    An empty problem always runs the reference (zero-size results, as in PyTorch):
    kernels never see an empty tensor.
    """
    if _current == "reference":
        return "reference"
    # One pass over the tensors (every op of every step comes here, some twice).
    on_cuda = has_empty = False
    for t in tensors:
        if t is not None:
            if t.is_cuda:
                on_cuda = True
            if not t.numel():
                has_empty = True
    if has_empty and _empty_problem(tensors):
        return "reference"
    if _current == "auto":
        return "triton" if on_cuda and triton_available() else "reference"
    if not triton_available():
        raise RuntimeError("backend 'triton' was chosen but the triton package is not installed")
    if not on_cuda and not (_launches_stubbed or interpreter_enabled()):
        raise RuntimeError(
            "backend 'triton' on CPU tensors needs Triton's interpreter: set "
            "TRITON_INTERPRET=1 before triton is imported, or use backend 'auto' or "
            "'reference'"
        )
    if not on_cuda and not _launches_stubbed and any(t is not None and t.dtype == torch.bfloat16 for t in tensors):
        # The interpreter computes bfloat16 as garbage (values near 1e10), never an error.
        raise RuntimeError(
            "backend 'triton' on CPU tensors runs Triton's interpreter, which has no bfloat16 math: "
            "use float32 or float16 on the CPU (bfloat16 kernels run on a GPU), or backend 'reference'"
        )
    return "triton"


@functools.lru_cache(maxsize=1)
def _register_capture_check() -> None:
    """Tell the kernels' tile autotune how to see CUDA-graph capture (it must not time
    launches then); kernels/ makes no torch.cuda call itself."""
    from fastgan.kernels import _tiles

    _tiles.set_capture_check(torch.cuda.is_current_stream_capturing)


_modules: dict = {}


def implementation(family: str, *tensors: torch.Tensor | None):
    """The module implementing op family `family` for these tensors.

    Both fastgan.reference.<family> and fastgan.kernels.<family> expose the same
    functions with the same signatures; the kernels module is imported only when used,
    so that importing fastgan never compiles or imports Triton code.
    """
    package = "kernels" if resolve(*tensors) == "triton" else "reference"
    if package == "kernels":
        _register_capture_check()
    module = _modules.get((package, family))
    if module is None:
        module = _modules[(package, family)] = importlib.import_module(f"fastgan.{package}.{family}")
    return module
