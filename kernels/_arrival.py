"""Reductions across the programs of one launch without a second launch: each program
stores its partial result to its own slot of a workspace, then takes a ticket from an
int32 counter; the program that arrives last sums the slots in slot order and writes
the result. Used by the split-K weight gradients (conv.py, linear.py) and the batch
norm statistics and gradient sums (batch_norm.py).

Deterministic: the last program sums slots 0, 1, ..., S-1 in that order whichever
program it is, so the bits equal those of a separate reduction pass in slot order.

Memory ordering on a GPU (the interpreter runs programs one after another, so it can
never show a race):
 1. every thread of a program stores its part of the slot (plain stores);
 2. a CTA barrier (debug_barrier) orders those stores before what follows in any of
    the program's threads;
 3. the ticket, an atomic add on the counter with acq_rel semantics at GPU scope, is
    issued after the barrier: its release half is cumulative, so it publishes every
    store the barrier ordered before it, the other threads' included;
 4. the program that draws ticket S-1 has, through the acquire half of its add (atomic
    adds on one address form a single release sequence), observed all S-1 earlier
    releases, hence every other slot; a second barrier orders all its threads' loads
    after the acquire, and those loads go through L2 (.cg), never a stale L1 line;
 5. it then resets the counter to 0: all S increments have happened (it drew the last
    ticket), and the next launch that uses the counter is stream-ordered after this one.
So the counters, kept in a per-device workspace zeroed once when it is allocated, are
zero between launches: no memset launch per step, and a captured CUDA graph replays
correctly. Launches that share the workspace must be ordered on one stream per device
(two kernels running concurrently on different streams would share counters).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _common


@triton.jit
def arrived_last(counter_ptr, arrivals):
    """Take a ticket from the int32 counter at counter_ptr after this program's partial
    stores; True in the program that draws the last of `arrivals` tickets. That program
    must call release_counter once it has read the slots (module docstring)."""
    tl.debug_barrier()
    ticket = tl.atomic_add(counter_ptr, 1, sem="acq_rel", scope="gpu")
    tl.debug_barrier()
    return ticket == arrivals - 1


@triton.jit
def release_counter(counter_ptr):
    """Back to 0 for the next launch (called by the last arrival only)."""
    tl.atomic_xchg(counter_ptr, 0, sem="relaxed", scope="gpu")


@triton.jit
def sum_slots(ws_ptr, offs, mask, slot_stride, slots):
    """ws[0] + ws[1] + ... + ws[slots - 1] at offsets `offs`, added in slot order."""
    total = tl.load(ws_ptr + offs, mask=mask, other=0.0, cache_modifier=".cg")
    for slot in range(1, slots):
        total += tl.load(ws_ptr + slot * slot_stride + offs, mask=mask, other=0.0, cache_modifier=".cg")
    return total


_counters: dict = {}
# Buffers replaced by a larger one stay allocated: a captured CUDA graph keeps using the
# address it was captured with, and freed memory would be handed to other tensors.
_retired: list = []


def tile_counters(count: int, device) -> torch.Tensor:
    """At least `count` int32 counters on `device`, all 0 (the kernels that use them
    leave them 0). Kept per device and grown on demand, so a training step allocates
    nothing after its first run (run a step before capturing a CUDA graph)."""
    device = torch.device(device)
    buf = _counters.get(device)
    if buf is None or buf.numel() < count:
        if buf is not None:
            _retired.append(buf)
        buf = torch.zeros(max(count, 2 * (buf.numel() if buf is not None else 0), 1024), dtype=torch.int32,
                          device=device)
        _counters[device] = buf
    return buf


_scratch: dict = {}


def scratch(count: int, dtype: torch.dtype, device) -> torch.Tensor:
    """At least `count` elements of `dtype` on `device` for the partial results of one
    launch: slots its programs write and its last program to arrive reads back, never
    read after the launch. One buffer per (device, dtype), grown on demand like the
    counters (kept for captured CUDA graphs), so a launch allocates none, with the same
    condition: the launches that share it run in order on one stream. Poisoned with
    NaN per use under test like an output (a slot no program writes shows up)."""
    key = (device, dtype)
    buf = _scratch.get(key)
    if buf is None or buf.numel() < count:
        if buf is not None:
            _retired.append(buf)
        buf = torch.empty(max(count, 2 * (buf.numel() if buf is not None else 0), 4096), dtype=dtype, device=device)
        _scratch[key] = buf
    if _common._poison:
        buf.fill_(float("nan"))
    return buf
