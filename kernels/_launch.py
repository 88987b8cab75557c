"""Direct kernel launches: Triton's launch path without its per-launch binding.

`kernel[grid](*args, **kwargs)` goes through KernelInterface.__getitem__ and
JITFunction.run, which on every launch binds the arguments and specialises each one
(specialize_impl), builds the cache key, looks up the compiled kernel, checks the
kernel's globals, and only then calls `compiled.run(...)` (triton/runtime/jit.py,
JITFunction.run; the same in Triton 3.6 and 3.9). A training step repeats the same
launches with the same plans, so that work is redone ~67 times a step for nothing:
about half of the ~50 us of host time per launch measured on an H200.

DirectLaunch does the first launch of a call site the normal way (it compiles, and
raises OutOfResources and the like exactly as before) and keeps the CompiledKernel
that JITFunction.run returns. Later launches call `compiled.run` directly, with the
arguments in the kernel's signature order (as `bound_args.values()`: the positional
arguments, then every later parameter from the keyword arguments or its default), the
current device's current stream read per launch (CUDA-graph capture launches on a side
stream) and Triton's launch hooks and launch metadata read per launch (profilers set
them).

What makes a compiled kernel valid for an argument list is its specialisation (Triton
3.6 and 3.9 alike: native_specialize_impl, BaseBackend.get_tensor_specialization /
get_int_specialization in triton/backends/compiler.py): a tensor's dtype and whether
its data_ptr() is divisible by 16; an int's width (i32 / i64 / u64), whether it is 1
(then a constexpr) and whether it is divisible by 16; a float is fp32, a bool u1, None
a constexpr; constexprs by value; plus the current device and the options (keyword
arguments such as num_warps, and the knobs JITFunction.run adds: debug,
instrumentation mode). A launcher's plan (kernels/_plans.py) fixes shapes, strides,
int scalars and dtypes; what may still change between calls of one plan is each
tensor's alignment and the device. The guard checks, per launch:
- every tensor argument: same dtype, and the 16-byte alignment of its data pointer
  (a bit mask; each mask seen gets its own compiled kernel, through the normal path);
- every float argument is a float; every other non-tensor argument (ints, bools,
  None, strings) is of the same type and equal (so an int keeps its specialisation);
- the keyword arguments equal the first launch's (constexprs and options; Triton's
  own kernel_key_cache compares them by equality too);
- the current device, Triton's option knobs, the globals the kernel read when it
  compiled (JITFunction.run raises when they changed: the normal path then does);
- no pre-run hooks on the kernel, no stages-inspection hook.
Anything else falls back to the normal path. Runtime (non-constexpr) parameters passed
by keyword are read per launch; a call that passes a different set of keywords, more
or fewer positional arguments, or a callable grid always takes the normal path.

While a launch program is being recorded (kernels._program: a layer chain's forward
or backward), every DirectLaunch call is handed to the recorder, which notes it and
makes it; a replayed program calls the same DirectLaunch objects, so its launches pass
the same guard.

The direct path is off, and every launch takes `kernel[grid](...)`, when:
- Triton's interpreter runs the kernels (kernels._common.interpreting()): there is no
  CompiledKernel, the interpreter runs the Python kernel itself;
- KernelInterface.__getitem__ is not Triton's own: fastgan.bench.launches patches it to
  record or stub every launch (launch counts, the host benchmark, the static report),
  so each launch must reach it;
- FASTGAN_DIRECT_LAUNCH=0 in the environment (read once, at import) or
  set_enabled(False): to compare the two paths (benchmarks/launch_overhead.py,
  `fastgan bench`) or to rule this module out.
"""

from __future__ import annotations

import contextlib
import os
import threading

import torch
from triton import knobs
from triton.runtime.driver import driver
from triton.runtime.jit import KernelInterface

from . import _program
from ._common import interpreting

_ENABLED = os.environ.get("FASTGAN_DIRECT_LAUNCH", "1") != "0"
# Triton's own __getitem__, taken when this module is imported (before any recording).
_GETITEM = KernelInterface.__getitem__
_MISSING = object()
# Triton 3.9 adds this knob to the options JITFunction.run compiles with; 3.6 has none.
_HAS_FPSAN = hasattr(type(knobs.compilation), "fpsan_homomorphic_casts")
_HookChain = getattr(knobs, "HookChain", None)
_thread_id = threading.get_ident


def enabled() -> bool:
    """Whether DirectLaunch may skip Triton's launch path (it still checks each launch)."""
    return _ENABLED and not interpreting()


def set_enabled(flag: bool) -> bool:
    """Turn the direct path on or off for every launcher; returns the previous setting."""
    global _ENABLED
    before, _ENABLED = _ENABLED, bool(flag)
    return before


@contextlib.contextmanager
def direct_launches(flag: bool):
    """set_enabled(flag) for the duration of the block."""
    before = set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(before)


def _hooks_idle(hook) -> bool:
    """True when calling `hook` would do nothing (None or an empty HookChain)."""
    return hook is None or (type(hook) is _HookChain and not hook.calls)


class _Entry:
    """The argument template and guard of one DirectLaunch, from its first launch."""

    __slots__ = ("nargs", "kwargs", "kw_fixed", "kw_slots", "tail", "tensors", "floats", "fixed", "kernels",
                 "device", "debug", "kernel_debug", "mode", "fpsan", "globals")


def _template(kernel, args, kwargs):
    """The _Entry for a launch of `kernel` with (args, kwargs), or None when the
    direct path cannot serve this call shape (it then always takes the normal path)."""
    params = kernel.params
    nargs = len(args)
    if nargs > len(params):
        return None
    if any(p.name in kwargs for p in params[:nargs]):
        return None  # an argument given twice: the normal path raised already
    e = _Entry()
    e.nargs, e.kwargs = nargs, dict(kwargs)
    tail, kw_slots = [], []
    for j, p in enumerate(params[nargs:]):
        if p.name in kwargs:
            if p.is_constexpr:
                tail.append(kwargs[p.name])
            else:  # a runtime argument by keyword (bn_normalize's momentum): read per launch
                tail.append(None)
                kw_slots.append((nargs + j, p.name))
        elif p.has_default:
            tail.append(p.default)
        else:
            return None  # a missing argument: the normal path raised already
    e.tail, e.kw_slots = tuple(tail), tuple(kw_slots)
    runtime = {name for _, name in kw_slots}
    e.kw_fixed = tuple((k, v) for k, v in kwargs.items() if k not in runtime)
    full = _build(e, args, kwargs)
    # Guards on the positions a call supplies (the constant tail needs none).
    supplied = list(range(nargs)) + [i for i, _ in kw_slots]
    tensors, floats, fixed = [], [], []
    for i in supplied:
        v = full[i]
        if isinstance(v, torch.Tensor):
            tensors.append((i, v.dtype, 1 << len(tensors)))
        elif type(v) is float:
            floats.append(i)
        else:
            fixed.append((i, type(v), v))
    e.tensors, e.floats, e.fixed = tuple(tensors), tuple(floats), tuple(fixed)
    e.kernels = {}
    return e


def _build(e, args, kwargs):
    """The kernel's full argument tuple (signature order) for this call."""
    if not e.kw_slots:
        return (*args, *e.tail)
    full = [*args, *e.tail]
    for i, name in e.kw_slots:
        full[i] = kwargs[name]
    return tuple(full)


class DirectLaunch:
    """`kernel[grid](*args, **kwargs)`, with every launch after the first of a given
    specialisation made directly with the CompiledKernel (module docstring). One per
    launcher plan and kernel: the grid is fixed, and the plan fixes what the guard
    does not check. Returns what the launch returns (the CompiledKernel, or whatever
    a patched __getitem__ returns)."""

    __slots__ = ("kernel", "grid", "_grid3", "_entry", "_usable", "_home", "_name")

    def __init__(self, kernel, grid):
        self.kernel, self.grid = kernel, grid
        self._entry = None
        # The module binding the kernel came from: launches use what it binds at launch
        # time, as `kernel[grid](...)` in the launcher did (tests replace kernels there).
        fn = getattr(kernel, "fn", None)
        home = getattr(fn, "__globals__", None)
        self._name = getattr(fn, "__name__", None)
        self._home = home if home is not None and home.get(self._name) is kernel else None
        # A callable grid depends on the arguments: not served directly.
        self._usable = not interpreting() and not callable(grid) and hasattr(kernel, "params")
        if self._usable:
            g = tuple(grid)
            self._grid3 = (g[0], g[1] if len(g) > 1 else 1, g[2] if len(g) > 2 else 1)

    def __call__(self, *args, **kwargs):
        return self.call(args, kwargs)

    def call(self, args: tuple, kwargs: dict):
        """The launch `self(*args, **kwargs)`, with its arguments as they are: a launch
        program's replay (kernels._program) calls this with a tuple it builds and a
        dict it keeps (nothing here changes either), a repacking less per launch."""
        rec = _program.recorder
        if rec is not None and not rec.paused and rec.thread == _thread_id():
            return rec.launch(self, args, kwargs)  # a launch program being recorded: it calls back
        if not self._usable:  # the interpreter's launches (and a callable grid): Triton's path, one call
            kernel = self.kernel if self._home is None else self._home.get(self._name, self.kernel)
            return kernel[self.grid](*args, **kwargs)
        e = self._entry
        if (e is None or not _ENABLED or KernelInterface.__getitem__ is not _GETITEM
                or (self._home is not None and self._home.get(self._name) is not self.kernel)):
            return self._normal(args, kwargs, None)
        kernel = self.kernel
        # Guards (module docstring), cheapest first.
        if len(args) != e.nargs or kernel.pre_run_hooks:
            return self._normal(args, kwargs, None)
        if e.kw_slots:
            if len(kwargs) != len(e.kwargs):
                return self._normal(args, kwargs, None)
            for k, v in e.kw_fixed:
                if kwargs.get(k, _MISSING) != v:
                    return self._normal(args, kwargs, None)
            for _, name in e.kw_slots:
                if name not in kwargs:
                    return self._normal(args, kwargs, None)
            full = _build(e, args, kwargs)
        else:
            if kwargs != e.kwargs:
                return self._normal(args, kwargs, None)
            full = (*args, *e.tail)
        mask = 0
        try:
            for i, dtype, bit in e.tensors:
                t = full[i]
                if t.dtype is not dtype:
                    return self._normal(args, kwargs, None)
                if t.data_ptr() & 15:
                    mask |= bit
        except AttributeError:  # None (or a scalar) where a tensor was
            return self._normal(args, kwargs, None)
        for i in e.floats:
            if type(full[i]) is not float:
                return self._normal(args, kwargs, None)
        for i, typ, v in e.fixed:
            a = full[i]
            if a is not v and (type(a) is not typ or a != v):
                return self._normal(args, kwargs, None)
        for g, name, obj in e.globals:
            if g.get(name, _MISSING) is not obj:
                return self._normal(args, kwargs, None)
        rt, comp = knobs.runtime, knobs.compilation
        if (rt.debug != e.debug or kernel.debug != e.kernel_debug or comp.instrumentation_mode != e.mode
                or rt.add_stages_inspection_hook is not None
                or (_HAS_FPSAN and comp.fpsan_homomorphic_casts != e.fpsan)):
            return self._normal(args, kwargs, None)
        drv = driver.active
        device = drv.get_current_device()
        compiled = e.kernels.get(mask)
        if compiled is None or device != e.device:
            return self._normal(args, kwargs, mask if device == e.device else None)
        stream = drv.get_current_stream(device)
        enter, leave = rt.launch_enter_hook, rt.launch_exit_hook
        if enter is None or (_hooks_idle(enter) and _hooks_idle(leave)):
            metadata = None  # what launch_metadata would give no hook to read
        else:
            metadata = compiled.launch_metadata(self.grid, stream, *full)
        g0, g1, g2 = self._grid3
        compiled.run(g0, g1, g2, stream, compiled.function, compiled.packed_metadata, metadata, enter, leave, *full)
        return compiled

    def _normal(self, args, kwargs, mask):
        """The launch through Triton's path; keeps the CompiledKernel it returns when
        the direct path may serve later calls (mask: the alignment variant this call
        has, known when every other guard passed)."""
        kernel = self.kernel if self._home is None else self._home.get(self._name, self.kernel)
        compiled = kernel[self.grid](*args, **kwargs)
        if not self._usable or not _ENABLED or KernelInterface.__getitem__ is not _GETITEM or kernel is not self.kernel:
            return compiled
        if getattr(compiled, "function", None) is None or not hasattr(compiled, "packed_metadata"):
            return compiled  # no launch happened (a cache hook) or not a CompiledKernel
        if self._entry is None:
            e = _template(self.kernel, args, kwargs)
            if e is None:
                self._usable = False
                return compiled
            full = _build(e, args, kwargs)
            mask = sum(bit for i, _, bit in e.tensors if full[i].data_ptr() & 15)
            rt, comp = knobs.runtime, knobs.compilation
            e.device = driver.active.get_current_device()
            e.debug, e.kernel_debug, e.mode = rt.debug, self.kernel.debug, comp.instrumentation_mode
            e.fpsan = comp.fpsan_homomorphic_casts if _HAS_FPSAN else None
            e.globals = tuple((g, name, g.get(name, _MISSING))
                              for (name, _), (_, g) in self.kernel.used_global_vals.items())
            e.kernels[mask] = compiled
            self._entry = e
        elif mask is not None:
            self._entry.kernels[mask] = compiled
        return compiled
