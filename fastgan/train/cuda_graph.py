"""A whole training step captured once in a CUDA graph and replayed every step after.

An eager GAN step launches a few hundred kernels (G forward, D forward/backward on real
and fake, the loss, G through D, both Adam updates, the EMA); at DCGAN-64 on an H100
their GPU time is about 1.6 ms, less than the Python and PyTorch host work that launches
them. A CUDA graph records the launches once and replays them with one host call, so
the step costs what the GPU needs.

`CapturedStep(step, inputs)` runs `step(**inputs)`:
  - the first `warmup` calls eagerly, on a side stream (torch's recipe: lazy work such
    as Triton compilation, cuBLAS workspaces and the optimizers' state happen here,
    never during capture);
  - the next call captures the step into a torch.cuda.CUDAGraph, then replays it;
  - every later call replays it.
`inputs` are the graph's static input buffers: the caller writes each step's values
into them in place (or passes them to the call, which copies). What `step` returns is
then the graph's static output: overwritten by the next call, so read or copy it
before (the Trainer clones its three losses and reads them every log_every steps).

What a step must obey to be captured (capture fails, or worse replays stale values,
otherwise):
  - no host synchronisation: no .item(), .tolist(), .cpu(), bool/int/float of a device
    tensor, nonzero or boolean-mask indexing (data-dependent shapes), no
    torch.cuda.synchronize; tests/test_no_host_sync.py holds fastgan's step to this;
  - the same kernels with the same shapes every call: no autotuning or compilation
    after warm-up, no Python branch on anything but host-known state (a step whose
    structure changes, such as one with or without the lazy R1 penalty, is a second
    CapturedStep);
  - anything that changes from step to step (the batch, the noise, a decay factor) is
    a device tensor, never a Python number: numbers are frozen into the graph;
  - optimizers step on the device: torch.optim.Adam(fused=True, capturable=True)
    (see `graph_safe_adam`; `optimizers=` checks it before anything runs);
  - tensors that live across steps (parameters, optimizer state, batch-norm statistics)
    are updated in place, never rebound: the graph keeps the addresses it recorded.
    Loading an optimizer state dict rebinds its state: make a new CapturedStep after.

Random numbers: the step's inputs include its noise, drawn outside the graph from the
caller's torch.Generator and copied into a static buffer. The alternative, drawing
inside the graph, works only for generators registered with the graph (the default CUDA
generator is; a private torch.Generator needs CUDAGraph.register_generator_state, which
not every supported torch has), and would make the Trainer's checkpointed noise state
depend on the offsets the graph advances. Drawing outside costs one randn and one copy
per step and keeps the noise, and so the step, bit-identical to the eager Trainer.

Graphs that share a memory pool (`pool=`, as the Trainer's variants do) are safe to
replay in any order here because no graph reads another's outputs and none keeps state
across steps in the pool: parameters and optimizer state are allocated before capture,
and the gradients a graph allocates are written before they are read in every replay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch


def cuda_graph_unsupported(device) -> str | None:
    """Why CUDA graphs cannot run on `device` (None when they can)."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"CUDA graphs record GPU kernels and need a CUDA device, got {device.type!r}"
    if not torch.cuda.is_available():
        return "CUDA graphs need a CUDA device, but CUDA is not available"
    return None


def graph_safe_adam(params, **options) -> torch.optim.Adam:
    """torch.optim.Adam that can be captured: fused, with its step count and update on
    the device (capturable). Numerically the same update as Adam(fused=True)."""
    return torch.optim.Adam(params, fused=True, capturable=True, **options)


def check_capturable(optimizers) -> None:
    """A clear error, before any capture, for an optimizer whose step would sync."""
    for i, opt in enumerate(optimizers):
        for group in opt.param_groups:
            if not group.get("capturable", False):
                raise ValueError(
                    f"optimizers[{i}] ({type(opt).__name__}) has capturable=False: its step reads the step count "
                    f"on the host and cannot be captured; build it with capturable=True (graph_safe_adam)"
                )


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


class CapturedStep:
    """`step(**inputs)` warmed up eagerly, then captured in a CUDA graph and replayed.

    step: a callable taking the input tensors by name; it may return a tensor or a
        (nested) tuple/list/dict of tensors.
    inputs: name -> CUDA tensor: the static input buffers, used as given (not copied),
        so several CapturedSteps can share them.
    warmup: eager calls before capture (>= 1; torch's examples use 3).
    pool: a memory pool handle (torch.cuda.graph_pool_handle() or another graph's
        .pool()) to share with other graphs; None gives the graph its own.
    optimizers: checked to be capturable before anything runs.
    """

    def __init__(self, step: Callable[..., Any], inputs: Mapping[str, torch.Tensor], *, warmup: int = 3,
                 pool=None, optimizers=()):
        if not callable(step):
            raise TypeError(f"step must be callable, got {type(step).__name__}")
        if not isinstance(inputs, Mapping) or not inputs:
            raise ValueError("inputs must be a non-empty mapping of name -> tensor (the graph's static input buffers)")
        for name, t in inputs.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"inputs: names must be Python identifiers (they are passed as keywords), got {name!r}")
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"inputs[{name!r}] must be a tensor, got {type(t).__name__}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"warmup must be an int >= 1 (eager calls before capture), got {warmup!r}")
        devices = {t.device for t in inputs.values()}
        if len(devices) != 1:
            raise ValueError(f"inputs must all be on one device, got {sorted(str(d) for d in devices)}")
        (device,) = devices
        why = cuda_graph_unsupported(device)
        if why is not None:
            raise ValueError(f"inputs are on {device}: {why}")
        check_capturable(optimizers)
        self.step, self.inputs, self.warmup, self.pool = step, dict(inputs), warmup, pool
        self.device = device
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs = None
        self._side = None  # the warm-up stream

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def _copy_in(self, values: Mapping[str, torch.Tensor]) -> None:
        for name, value in values.items():
            if name not in self.inputs:
                raise ValueError(f"unknown input {name!r}; the step's inputs are {sorted(self.inputs)}")
            static = self.inputs[name]
            if not isinstance(value, torch.Tensor) or value.shape != static.shape or value.dtype != static.dtype:
                got = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"input {name!r} must be {static.dtype} {tuple(static.shape)} (its static buffer), "
                                 f"got {got}")
        for name, value in values.items():
            self.inputs[name].copy_(value, non_blocking=True)

    def __call__(self, **values):
        """Copy `values` (any subset of the inputs) into the static buffers, then run the
        step: eagerly while warming up, else by replaying the graph (captured on the
        first call after warm-up). Returns the step's outputs."""
        self._copy_in(values)
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            return self._run_eagerly()
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.outputs

    def _run_eagerly(self):
        current = torch.cuda.current_stream(self.device)
        if self._side is None:
            self._side = torch.cuda.Stream(self.device)
        side = self._side
        side.wait_stream(current)
        with torch.cuda.stream(side):
            out = self.step(**self.inputs)
        current.wait_stream(side)
        for t in _tensors(out):  # made on the side stream, used on this one
            t.record_stream(current)
        return out

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self.outputs = self.step(**self.inputs)
        self.graph = graph
