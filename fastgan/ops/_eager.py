"""The eager form of a custom op: a torch.autograd.Function running the op's backend
function directly, with the op's own setup_context and backward.

Outside torch.compile / export (fastgan.functional decides), this skips torch.library's
dispatch (redispatch, default filling, schema checks), which costs more host time per
call than a kernel launch. The Function's forward takes ctx (the older autograd.Function
form): the setup_context form binds the arguments with inspect.signature on every call.
"""

from __future__ import annotations

from typing import Callable

import torch


def function(name: str, run: Callable, setup_context: Callable, backward: Callable) -> type:
    """An autograd.Function `name` whose forward is run(*inputs), then
    setup_context(ctx, inputs, output), and whose backward is `backward`; `run` stays
    reachable as Function.run."""

    def forward(ctx, *inputs):
        output = run(*inputs)
        setup_context(ctx, inputs, output)
        return output

    fn = type(name, (torch.autograd.Function,), {
        "__doc__": f"The eager form of fastgan::{run.__name__} (see fastgan.ops._eager).",
        "__module__": run.__module__,
        "forward": staticmethod(forward), "backward": staticmethod(backward), "run": staticmethod(run),
    })
    fn.apply = staticmethod(_direct_apply(fn))
    return fn


# The C++ apply every autograd.Function ends in, and functorch's unwrapping of leaked
# (dead) transform wrappers that torch.autograd.Function.apply does first.
_base_apply = torch._C._FunctionBase.__dict__["apply"]
_unwrap_if_dead = torch._C._functorch.unwrap_if_dead
_transforms_active = torch._C._are_functorch_transforms_active


def _direct_apply(fn: type) -> Callable:
    """fn.apply without torch.autograd.Function.apply's Python layer where it does
    nothing for these Functions (no setup_context to bind arguments for, no functorch
    transform active): the same C++ apply on the same (unwrapped) arguments, a few
    microseconds less per op. Under a functorch transform, the generic apply."""
    generic = fn.apply
    direct = _base_apply.__get__(None, fn)

    def apply(*args):
        if _transforms_active():
            return generic(*args)
        return direct(*[_unwrap_if_dead(a) if isinstance(a, torch.Tensor) else a for a in args])

    return apply


def call(fn: type) -> Callable:
    """fn.apply while grad mode is on (a higher-order graph may be built), else fn.run:
    a first-order backward records nothing, so apply's bookkeeping would be wasted."""
    apply, run = fn.apply, fn.run

    def dispatch(*args):
        return apply(*args) if torch.is_grad_enabled() else run(*args)

    return dispatch
