"""Launch programs: the host work of a run of launches, recorded once per signature
and replayed.

A layer chain's forward or backward (fastgan.ops.chain) does, for a given signature,
the same thing every call: it allocates the same outputs, makes the same views, and
launches the same kernels with the same arguments, each tensor argument being one of
the run's inputs, one of those allocations or views, or a persistent buffer (the
per-device scratch and counters of kernels._arrival). A Program is that sequence: the
run records it once, then replays it: the same allocations and launches, through the
same DirectLaunch objects (so the same guards and compiled kernels), without the
Python that decided them (layers, launchers, plans, checks).

Recording runs the normal path under a Recorder, a TorchDispatchMode that sees every
ATen op the run makes outside the launches themselves, so nothing the run does can
go unrecorded:
- allocations (empty_strided, empty, new_empty, empty_like) become slots;
- views (unbind, as_strided, select, slice, view ...) become views of their base, by
  offset from the base's own storage offset;
- fills of known tensors (outputs poisoned with NaN under test) are replayed;
- launches reach the recorder from DirectLaunch.__call__ with their arguments;
- any other op (a copy, arithmetic such as nn.BatchNorm's running-statistics update
  in PyTorch ops) is replayed as the same ATen call on the replay's tensors;
- an op that reads tensor data on the host (.item(), nonzero: a replay would repeat
  the recorded answer) or a result the recording cannot place makes the recording
  fail: that signature keeps the normal path.
What the run returns (and leaves on its context) is described by a Layout: entries
whose tensors are slots of the replay. A replay is one generated Python function
(_compile). It allocates only what must be new: temporaries (nothing the run returns
refers to them) are the recorded run's, and the tensors an earlier replay returned
are taken again once nothing holds them (Program).

A program is only as right as its key: the caller's signature must hold everything
the run's Python decides on (fastgan.ops.chain: metadata of every input, the links'
state, the dispatch state, per-call values such as a momentum factor checked
separately). Under FASTGAN_CHECK_TAPES (the tests) every other call of a program runs
the normal path again, records it and compares.
"""

from __future__ import annotations

import math
import sys
import threading

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _pop_mode_temporarily

aten = torch.ops.aten


def _ops(*names):
    """The ATen ops (packets, or overloads as 'name.overload') of these names that this
    PyTorch has."""
    found = set()
    for name in names:
        packet, _, overload = name.partition(".")
        op = getattr(aten, packet, None)
        op = getattr(op, overload, None) if overload and op is not None else op
        if op is not None:
            found.add(op)
    return found


_ALLOCATIONS = _ops("empty_strided.default", "empty.memory_format", "new_empty.default", "new_empty_strided.default",
                    "empty_like.default")
_VIEWS = _ops("unbind.int", "as_strided.default", "select.int", "slice.Tensor", "view.default", "t.default",
              "permute.default", "unsqueeze.default", "squeeze.dim", "alias.default", "expand.default",
              "_reshape_alias.default", "transpose.int", "split.Tensor", "narrow.default")
_FILLS = _ops("fill_.Scalar", "zero_.default")
# Ops whose result depends on tensor data on the host (a sync, a data-dependent
# shape): a program would replay the recorded run's answer.
_HOST_READS = _ops("_local_scalar_dense", "nonzero", "equal", "is_nonzero", "masked_select", "_unique2",
                   "unique_dim", "unique_consecutive", "allclose")

_DETACH = aten.detach.default
_refcount = sys.getrefcount


def _shared_extra():
    """How many Python references a tensor gains while its TensorImpl is shared with
    C++ (a view's base, an autograd saved tensor): PyTorch's PyObject preservation
    makes it 1 (torch 2.13); None (no reuse of live-checked tensors) when it is
    something else or the C++ use count cannot be read."""
    if not hasattr(torch.Tensor, "_use_count"):
        return None
    alone = (torch.empty(1),)
    shared = (torch.empty(2),)
    shared = shared + (shared[0][:1],)
    extra = _refcount(shared[0]) - _refcount(alone[0])
    return extra if extra in (0, 1) else None


_SHARED_EXTRA = _shared_extra()

# Op kinds of a program.
_ALLOC, _VIEW, _FILL, _LAUNCH, _CONST, _OP = range(6)


class _Ref:
    """A tensor argument of a recorded op: the slot it is in."""

    __slots__ = ("slot",)

    def __init__(self, slot):
        self.slot = slot


# The recorder of the run being recorded (one thread at a time records; DirectLaunch
# reads this on every launch, so it is a plain module global).
recorder = None
_lock = threading.Lock()


class RecordingFailed(Exception):
    pass


class Recorder(TorchDispatchMode):
    """Records a run's allocations, views, fills and launches (module docstring). The
    first len(inputs) slots of the environment are the inputs, in order."""

    def __init__(self, inputs):
        super().__init__()
        self.slots = {}  # id(tensor) -> slot
        self.keep = []   # every tensor with a slot: ids stay unique while recording
        self.made = {}   # slot -> the tensor the recorded run allocated there
        self.ops = []
        self.size = 0
        self.failure = None
        self.paused = False
        self.thread = threading.get_ident()
        for t in inputs:
            self._bind(t)
        self.n_inputs = self.size

    def _bind(self, t):
        slot = self.size
        self.size += 1
        if isinstance(t, torch.Tensor) and id(t) not in self.slots:
            self.slots[id(t)] = slot
            self.keep.append(t)
        return slot

    def fail(self, why):
        if self.failure is None:
            self.failure = why

    def slot(self, t, external=True):
        """t's slot; a tensor the run neither received nor made is a persistent buffer
        (a constant of the program) when `external`, else the recording fails."""
        found = self.slots.get(id(t))
        if found is None:
            if not external:
                self.fail(f"a tensor of shape {tuple(t.shape)} the recording did not make")
                return 0
            found = self._bind(t)
            self.ops.append((_CONST, found, t))
        return found

    def _template(self, value):
        """value with every tensor (in lists and tuples too) replaced by its _Ref."""
        if isinstance(value, torch.Tensor):
            return _Ref(self.slot(value))
        if type(value) in (list, tuple):
            return type(value)(self._template(v) for v in value)
        if type(value) is dict:
            return {k: self._template(v) for k, v in value.items()}
        return value

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.paused or self.failure is not None:
            return out
        if func in _ALLOCATIONS:
            if out.device.type != "meta":  # planning's shape arithmetic: no data
                slot = self._bind(out)
                self.ops.append((_ALLOC, slot, tuple(out.shape), out.stride(), out.dtype, out.device))
                self.made[slot] = out
        elif func in _VIEWS:
            base = args[0]
            if base.device.type != "meta":
                source = self.slot(base)
                for view in (out if isinstance(out, (tuple, list)) else (out,)):
                    self.ops.append((_VIEW, self._bind(view), source, tuple(view.shape), view.stride(),
                                     view.storage_offset() - base.storage_offset()))
        elif func is _DETACH:
            # An alias a mode's factory output gets under autograd: the same slot.
            if out.device.type != "meta":
                self.slots[id(out)] = self.slot(args[0])
                self.keep.append(out)
        elif func in _FILLS:
            value = args[1] if len(args) > 1 else 0  # fill_(t, value) or zero_(t)
            self.ops.append((_FILL, self.slot(args[0]), value))
        else:
            self._op(func, args, kwargs or {}, out)
        return out

    def _op(self, func, args, kwargs, out):
        """Any other op (a copy, arithmetic such as a running-statistics update in
        PyTorch ops): replayed as the same call on the replay's tensors, unless it
        reads tensor data on the host or returns anything but tensors."""
        outs = () if out is None else tuple(out) if isinstance(out, (tuple, list)) else (out,)
        if all(t.device.type == "meta" for t in (*_tensors(args, kwargs), *outs)
               if isinstance(t, torch.Tensor)) and all(isinstance(o, torch.Tensor) for o in outs):
            return  # planning's shape arithmetic
        if func.overloadpacket in _HOST_READS or not all(isinstance(o, torch.Tensor) for o in outs):
            self.fail(f"{func} (reads tensor data on the host or returns a non-tensor)")
            return
        args, kwargs = self._template(args), self._template(kwargs)
        # In-place ops return a tensor that has a slot already.
        slots = tuple(None if id(o) in self.slots else self._bind(o) for o in outs)
        self.ops.append((_OP, func, args, kwargs, slots, isinstance(out, (tuple, list))))

    def launch(self, launcher, args, kwargs):
        """Records one launch of `launcher` (a DirectLaunch), then makes it, outside
        the recording (the interpreter's own ops are not the run's)."""
        if self.failure is None:
            values, places = _placed(args, self.slot)
            if any(isinstance(v, torch.Tensor) for v in kwargs.values()):
                self.fail("a tensor passed to a launch by keyword")
            self.ops.append((_LAUNCH, launcher, tuple(values), places, dict(kwargs)))
        self.paused = True
        try:
            with _pop_mode_temporarily():
                return launcher(*args, **kwargs)
        finally:
            self.paused = False

    def layout(self, items, reuse_from=None):
        """The Layout of a list of entries (tensors, None, constants, or lists / tuples
        of those, one level deep) in this recording's slots (reuse_from: Program)."""
        return Layout(items, self, reuse_from)

    def program(self, layout, **extra):
        if self.failure is not None:
            raise RecordingFailed(self.failure)
        return Program(self.ops, layout, self.n_inputs, self.made, extra)


def _placed(entries, slot):
    """(entries with None where a tensor was, ((index, slot(tensor)), ...))."""
    values, places = list(entries), []
    for i, e in enumerate(entries):
        if isinstance(e, torch.Tensor):
            values[i] = None
            places.append((i, slot(e)))
    return values, tuple(places)


def _tensors(args, kwargs):
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (t for t in a if isinstance(t, torch.Tensor))


class record:
    """with record(inputs) as rec: the run to record (one at a time per process; a
    nested or concurrent run is not recorded: rec is None)."""

    def __init__(self, inputs):
        self.inputs = inputs
        self.rec = None

    def __enter__(self):
        global recorder
        if recorder is not None or not _lock.acquire(blocking=False):
            return None
        self.rec = recorder = Recorder(self.inputs)
        self.rec.__enter__()
        return self.rec

    def __exit__(self, *exc):
        global recorder
        if self.rec is not None:
            self.rec.__exit__(*exc)
            recorder = None
            _lock.release()
        return False


class Layout:
    """Where each tensor of a list of entries is among a recording's slots: a replay
    returns new lists (tuples stay tuples) with the replay's tensors there, constants
    as recorded."""

    __slots__ = ("items", "reuse_from")

    def __init__(self, items, rec, reuse_from=None):
        self.reuse_from = reuse_from
        def describe(entry):
            if isinstance(entry, torch.Tensor):
                return (0, rec.slot(entry, external=False))
            if type(entry) in (list, tuple):
                if any(isinstance(e, (list, tuple)) and any(_tensors(e, {})) for e in entry):
                    rec.fail("a tensor nested more than one level in a layout")
                values, places = _placed(entry, lambda t: rec.slot(t, external=False))
                return (1, values, places, type(entry) is tuple)
            return (2, entry)

        self.items = tuple(describe(e) for e in items)

    def fingerprint(self):
        return tuple(_same(item) for item in self.items), self.reuse_from


class Program:
    """A recorded run, compiled: `replay(inputs)` makes its allocations, views, fills
    and launches and returns the results as `layout` describes them. `extra`: what
    the caller recorded beside it (per-call values it must match).

    Temporaries (allocations that nothing the run returns or leaves behind refers
    to, directly or through a view: the batch-norm sums blocks hand each other
    inside a backward, placeholder tensors) are not allocated again: every replay
    reuses the recorded run's, which no one else holds. That is safe as the scratch
    buffers of kernels._arrival are: the runs that share them launch in order on one
    stream. Under CUDA-graph capture a replay allocates them (`fresh`), so a graph
    never shares memory with eager replays.

    Layout items from `layout.reuse_from` on hold tensors that a replay may take
    again from an earlier one once they are dead: when every tensor that replay
    made for them (with their views and bases) is held by nothing but this program
    (its C++ use count and its Python reference count say so: autograd, a view, a
    parameter's .grad or a Python object holding one shows in them), the next
    replay takes them instead of allocating (`run`; two such sets are kept). A
    chain's forward leaves out its output, on which autograd records the graph."""

    __slots__ = ("ops", "layout", "extra", "replay", "fresh", "source", "calls", "mismatched", "pool", "dead")

    def __init__(self, ops, layout, n_inputs, made, extra):
        self.ops, self.layout, self.extra = tuple(ops), layout, extra
        self.calls = 0
        self.mismatched = False
        self.pool = []
        root, op_slots = _roots(self.ops), _op_slots(self.ops)
        kept = _escaping(layout, root, op_slots)
        temporaries = {slot: t for slot, t in made.items() if slot not in kept}
        reusable = _reusable(layout, root, op_slots) if _SHARED_EXTRA is not None else []
        self.dead = _dead_counts(root, reusable)
        self.replay, self.source = _compile(self.ops, layout, n_inputs, temporaries, reusable)
        self.fresh = _compile(self.ops, layout, n_inputs, {}, ())[0]

    def run(self, inputs):
        """The replay's results, from a dead set of reusable tensors when one is kept:
        every tensor of the set held by nothing but the set (its C++ uses those of
        the set's own views, its Python references the pool's)."""
        pool, dead = self.pool, self.dead
        for i, group in enumerate(pool):
            for j in range(len(group)):
                t = group[j]  # (not zip: its result tuple would hold a reference too)
                uses, refs = dead[j]
                # refs: the group's tuple, t and getrefcount's argument.
                if t._use_count() != uses or _refcount(t) != refs:
                    break
            else:
                del pool[i]
                break
        else:
            group = None
        results, group = self.replay(inputs, group)
        if group:
            pool.append(group)
            if len(pool) > 2:
                del pool[0]
        return results

    def fingerprint(self):
        """Comparable description: launchers and persistent buffers by identity."""
        extra = tuple(sorted((k, _same(v)) for k, v in self.extra.items()))
        return tuple(_same(op) for op in self.ops), self.layout.fingerprint(), extra


def _item_slots(item):
    """The slots a layout item refers to."""
    return [item[1]] if item[0] == 0 else [s for _, s in item[2]] if item[0] == 1 else []


def _roots(ops):
    """slot -> the allocation it is or is a view of (views of views are views of the
    root, as in PyTorch), for every slot the program allocates or views from those."""
    root = {}
    for op in ops:
        if op[0] == _ALLOC:
            root[op[1]] = op[1]
        elif op[0] == _VIEW and op[2] in root:
            root[op[1]] = root[op[2]]
    return root


def _op_slots(ops):
    """The slots an op other than a launch or a fill takes or returns (it may return
    or keep an alias of any of them)."""
    out = set()
    for op in ops:
        if op[0] == _OP:
            out.update(r.slot for r in _refs((op[2], op[3])))
            out.update(s for s in op[4] if s is not None)
    return out


def _escaping(layout, root, op_slots):
    """The slots a replay must not share with the previous one: those the layout or
    an op refers to, and the allocations they are views of."""
    out = set(op_slots)
    for item in layout.items:
        out.update(_item_slots(item))
    return out | {root[s] for s in out if s in root}


def _reusable(layout, root, op_slots):
    """The slots of layout items from layout.reuse_from on whose whole family (the
    root allocation and its views) the program makes, that no earlier layout item
    and no op other than a launch or a fill refers to; in slot order."""
    fresh, wanted = set(op_slots), set()
    for index, item in enumerate(layout.items):
        later = layout.reuse_from is not None and index >= layout.reuse_from
        (wanted if later else fresh).update(_item_slots(item))
    roots = {root[s] for s in wanted if s in root} - {root[s] for s in fresh if s in root}
    return [s for s in sorted(root) if root[s] in roots]


def _dead_counts(root, reusable):
    """Per reusable slot, its (C++ use count, Python reference count in Program.run)
    when nothing but the pool holds it: a root allocation is used by itself and by
    each of its views in the set."""
    uses = {slot: 1 for slot in reusable}
    for slot in reusable:
        if root[slot] != slot:
            uses[root[slot]] += 1
    return tuple((uses[slot], 3 + (_SHARED_EXTRA if uses[slot] > 1 else 0)) for slot in reusable)


def _refs(value):
    if type(value) is _Ref:
        yield value
    elif type(value) in (list, tuple):
        for v in value:
            yield from _refs(v)
    elif type(value) is dict:
        for v in value.values():
            yield from _refs(v)


def _literal(value) -> bool:
    """Whether repr(value) is Python source for an equal value of the same type."""
    if value is None or type(value) in (bool, int, str):
        return True
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is tuple and all(_literal(v) for v in value)


def _tuple_source(items) -> str:
    items = list(items)
    return f"({', '.join(items)},)" if items else "()"


def _compile(ops, layout, n_inputs, temporaries, reusable):
    """(replay, its source): the program as one straight-line Python function, so a
    replay pays for its allocations and launches and little else (no loop over ops,
    no argument lists built per launch). Objects (launchers, ops, dtypes, devices,
    persistent buffers, reused temporaries) are the function's globals.
    replay(inputs, reuse) -> (results, the reusable slots' tensors): with reuse (an
    earlier replay's reusable tensors) it takes those instead of making them."""
    names = {"empty_strided": torch.empty_strided}
    used = set()

    def const(value):
        if _literal(value):
            return repr(value)
        name = f"k{len(names)}"
        names[name] = value
        return name

    def ref(slot):
        if slot < n_inputs:
            used.add(slot)
            return f"i{slot}"
        return f"s{slot}"

    def source(value):
        """An argument of a recorded op: tensors by their slot."""
        if type(value) is _Ref:
            return ref(value.slot)
        if type(value) is list:
            return f"[{', '.join(map(source, value))}]"
        if type(value) is tuple and any(True for _ in _refs(value)):
            return _tuple_source(map(source, value))
        return const(value)

    def placed(values, places):
        """Source for each entry of a recorded (values, places) pair."""
        out = [const(v) for v in values]
        for i, slot in places:
            out[i] = ref(slot)
        return out

    body, hoisted = [], []
    group = [f"s{slot}" for slot in reusable]
    reusable = set(reusable)
    for op in ops:
        kind = op[0]
        if kind in (_ALLOC, _VIEW) and op[1] in reusable:
            target = hoisted  # made at the top, unless reused
        else:
            target = body
        if kind == _ALLOC:
            _, slot, shape, stride, dtype, device = op
            if slot in temporaries:
                target.append(f"s{slot} = {const(temporaries[slot])}")
            else:
                target.append(f"s{slot} = empty_strided({const(shape)}, {const(stride)}, dtype={const(dtype)}, "
                              f"device={const(device)})")
        elif kind == _LAUNCH:
            # The keyword arguments are constants (no tensor: Recorder.launch): one dict
            # per launch, kept; DirectLaunch.call takes both as they are.
            body.append(f"{const(op[1])}.call({_tuple_source(placed(op[2], op[3]))}, {const(dict(op[4]))})")
        elif kind == _VIEW:
            _, slot, base, shape, stride, offset = op
            base = ref(base)
            target.append(f"s{slot} = {base}.as_strided({const(shape)}, {const(stride)}, "
                          f"{base}.storage_offset() + {offset})")
        elif kind == _FILL:
            body.append(f"{ref(op[1])}.fill_({const(op[2])})")
        elif kind == _CONST:
            body.append(f"s{op[1]} = {const(op[2])}")
        else:
            _, func, args, kwargs, slots, multi = op
            call = f"{const(func)}({', '.join([*map(source, args), *(f'{k}={source(v)}' for k, v in kwargs.items())])})"
            targets = ["_" if s is None else f"s{s}" for s in slots]
            if any(s is not None for s in slots):
                call = f"{', '.join(targets)}{',' if multi else ''} = {call}"
            body.append(call)
    results = []
    for item in layout.items:
        if item[0] == 0:
            results.append(ref(item[1]))
        elif item[0] == 1:
            values = placed(item[1], item[2])
            results.append(_tuple_source(values) if item[3] else f"[{', '.join(values)}]")
        else:
            results.append(const(item[1]))
    head = [f"i{j} = inputs[{j}]" for j in sorted(used)]
    if group:
        head += ["if reuse is None:", *(f"    {line}" for line in hoisted), "else:",
                 f"    {', '.join(group)}, = reuse"]
    lines = head + body + [f"return [{', '.join(results)}], ({''.join(g + ', ' for g in group)})"]
    text = "def replay(inputs, reuse):\n" + "".join(f"    {line}\n" for line in lines)
    exec(compile(text, "<fastgan launch program>", "exec"), names)
    return names["replay"], text


def _same(value):
    """value with objects compared by identity and NaN equal to itself."""
    if type(value) is _Ref:
        return ("slot", value.slot)
    if isinstance(value, (tuple, list)):
        return tuple(_same(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _same(v)) for k, v in value.items()))
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if value is None or isinstance(value, (int, float, str, bool, torch.dtype, torch.device)):
        return value
    return ("object", id(value))


# Normal runs of a key that may record (the first never does: a signature seen once,
# as in property tests, costs no recording); a recording can fail for a one-time
# event (a persistent buffer growing), so a few tries before the key keeps the normal path.
_FIRST_RECORDING, _LAST_RECORDING = 2, 4


def replay_or_record(store: dict, key, inputs, per_call, normal, *, reuse_from=None, check=False, limit=4096):
    """The results of a run: replayed from store[key] when it holds a program recorded
    with the same per-call values, else normal() (a list of entries: tensors, None,
    constants, or lists / tuples of those), recorded when it is the key's turn.
    reuse_from: the first entry whose tensors only Python objects will keep (Program).
    Returns (results, replayed). Under `check`, every other call of a program runs
    normal() instead, records it again and compares: a program recorded differently
    twice in a row for one key raises (its signature misses something the run
    depends on); once is a one-time event (re-recorded, kept)."""
    entry = store.get(key)
    if type(entry) is Program:
        if entry.extra["per_call"] != per_call:
            store[key] = _LAST_RECORDING + 1  # values that change per call: never replayable
            return normal(), False
        if _capturing(inputs):  # never checked (recorded) under capture
            return entry.fresh(inputs, None)[0], True
        entry.calls += 1
        if not (check and entry.calls % 2 == 0):
            return entry.run(inputs), True
        results, again = _recorded(inputs, per_call, normal, reuse_from)
        if again is _BUSY:
            pass  # another recording was under way: nothing to compare
        elif again is None or again.fingerprint() != entry.fingerprint():
            # (a run that can no longer be recorded differs from its program too)
            if entry.mismatched:
                raise AssertionError(f"a launch program was recorded differently for the same key {key!r}")
            if again is None:
                entry.mismatched = True
            else:
                again.mismatched, again.calls = True, entry.calls
                store[key] = again
        else:
            entry.mismatched = False
        return results, False
    if _capturing(inputs):
        # Not recorded under capture: its temporaries would be the graph pool's memory.
        return normal(), False
    runs = (entry or 0) + 1
    if runs < _FIRST_RECORDING or runs > _LAST_RECORDING:
        if runs <= _LAST_RECORDING + 1:
            if len(store) >= limit:
                store.clear()
            store[key] = runs
        return normal(), False
    results, program = _recorded(inputs, per_call, normal, reuse_from)
    store[key] = program if isinstance(program, Program) else runs
    return results, False


_BUSY = object()


def _capturing(inputs) -> bool:
    """Whether a CUDA graph is being captured on the stream of the run (whose first
    input is a tensor on the run's device)."""
    first = inputs[0]
    return first.is_cuda and torch.cuda.is_current_stream_capturing()


def _recorded(inputs, per_call, normal, reuse_from):
    """(normal(), its Program; None when it could not be recorded, _BUSY when another
    recording was under way)."""
    with record(inputs) as rec:
        results = normal()
        if rec is None:
            return results, _BUSY
        layout = rec.layout(results, reuse_from)
    try:
        return results, rec.program(layout=layout, per_call=per_call)
    except RecordingFailed:
        return results, None
