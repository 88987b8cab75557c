"""FusedSequential: the nn.Sequential that fuse() returns, whose runs of fused conv
layers run as one autograd node each (fastgan.ops.chain) in an eager training step.

Same children, state_dict keys, hooks and results as the nn.Sequential it stands for;
only the host work differs. A run may hold Conv2dAct / ConvTranspose2dAct and the
conv -> batch norm -> act blocks (Conv2dBatchNormAct / ConvTranspose2dBatchNormAct),
with the FoldedBatchNorm2d and nn.Identity placeholders fuse() leaves between them
(their forward is the identity). It runs as a chain when every condition below holds,
else the children run one by one as in nn.Sequential:
- eager PyTorch in grad mode (not torch.compile / export / functorch, which trace the
  layers' own ops; without grad mode each layer has no autograd node to save);
- not a leaf input to the run that requires grad (a gradient penalty's: _run_chain);
- a plain tensor input whose call signature ran through the layers one by one once
  (their arguments checked by the public functions, as every layer does on its first
  call), and a 4-D input to the run;
- the blocks' batch norms in training mode, and backend 'triton' for every tensor;
- no hooks on the run's modules or global module hooks (a chain would skip them).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as _module

from .. import _validate as V
from .. import functional as FG
from .modules import (
    Conv2dAct, Conv2dBatchNormAct, ConvTranspose2dAct, ConvTranspose2dBatchNormAct, FoldedBatchNorm2d,
)

_CONVS = (Conv2dAct, ConvTranspose2dAct)
_BLOCKS = (Conv2dBatchNormAct, ConvTranspose2dBatchNormAct)
_PASS_THROUGH = (FoldedBatchNorm2d, nn.Identity)
# The module types a chain runs (exact types: a subclass may have its own forward).
CHAINABLE = _CONVS + _BLOCKS
_chain_ops = None


def _chain():
    """fastgan.ops.chain, imported on first use (it imports the Triton kernels)."""
    global _chain_ops
    if _chain_ops is None:
        from ..ops import chain

        _chain_ops = chain
    return _chain_ops


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)


def _global_hooks() -> bool:
    return bool(_module._global_forward_hooks or _module._global_forward_pre_hooks
                or _module._global_backward_hooks or _module._global_backward_pre_hooks)


class FusedSequential(nn.Sequential):
    """nn.Sequential whose runs of fused conv layers run as one autograd node each
    in an eager training step (module docstring)."""

    def forward(self, x):
        runs = self._runs(x)
        if runs is None:
            return super().forward(x)
        for item in runs:
            x = item(x) if isinstance(item, nn.Module) else self._run_chain(item, x)
        return x

    def _runs(self, x):
        """The children as modules to call and runs (lists of two or more fused conv
        layers) to chain, or None when this call runs them one by one."""
        # Tracing (torch.compile, export) first: it must not see the checks below.
        if torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return None
        if type(x) is not torch.Tensor or not torch.is_grad_enabled() or _global_hooks() \
                or torch._C._are_functorch_transforms_active():
            return None
        autocast = torch.is_autocast_enabled(x.device.type)
        signature = (x.shape, x.stride(), x.dtype, x.device, autocast,
                     torch.get_autocast_dtype(x.device.type) if autocast else None)
        seen = self.__dict__.setdefault("_chain_signatures", set())
        if signature not in seen:
            # The first call of a signature runs the layers one by one: each checks its
            # arguments (clear errors, before any kernel); the same results either way.
            seen.add(signature)
            return None
        children = tuple(self._modules.values())
        plan = self.__dict__.get("_chain_plan")
        if plan is None or plan[0] != children:
            plan = self.__dict__["_chain_plan"] = (children, *_plan(children))
        _, items, watched, norms = plan
        if items is None or any(map(_hooked, watched)) or not all(norm.training for norm in norms):
            return None
        return items

    def _run_chain(self, modules, x):
        # A leaf input that requires grad is a gradient penalty's (R1, WGAN-GP): its
        # create_graph backward would sum the penalty's and the loss's gradients per
        # chain, not per layer (equal up to rounding), so such calls keep the layers' bits.
        if type(x) is not torch.Tensor or x.dim() != 4 or (x.requires_grad and x.grad_fn is None):
            return _one_by_one(modules, x)
        chain = _chain()
        autocast = torch.is_autocast_enabled(x.device.type)
        if autocast:
            x = V.autocast(x)[0]
        params = []
        for m in modules:
            w, b = m.weight, m.bias
            if autocast:
                w, b = V.autocast(w, b)
            params += (w, b, m.norm.weight, m.norm.bias) if type(m) in _BLOCKS else (w, b)
        if FG._path(x, *params) != "triton":
            return _one_by_one(modules, x)
        layers, running = [], []
        for m in modules:
            if type(m) in _BLOCKS:
                norm = m.norm
                running_mean, running_var, _, factor = norm._step()
                layers.append(chain.BlockLayer((tuple(m.stride), tuple(m.padding), tuple(m._block_output_padding()),
                                                m._block_transposed), norm.eps, norm.act, norm.alpha))
                running.append((running_mean, running_var, factor))
            else:
                transposed = type(m) is ConvTranspose2dAct
                layers.append(chain.ConvLayer(m.stride, m.padding, m.output_padding if transposed else (0, 0),
                                              transposed, m._activation()))
                running.append(None)
        return chain.run(tuple(layers), tuple(running), x, params)


def _plan(children):
    """(items, watched, norms) for these children: items as _runs returns them (None
    when there is nothing to chain), the modules whose hooks would be skipped, and
    the blocks' batch norms (which must be in training mode)."""
    items, run, watched = [], [], []
    for m in children:
        kind = type(m)
        if kind in _PASS_THROUGH:
            watched.append(m)
        elif kind in CHAINABLE:
            run.append(m)
        else:
            _flush(run, items)
            run = []
            items.append(m)
    _flush(run, items)
    chained = [m for item in items if type(item) is list for m in item]
    norms = [m.norm for m in chained if type(m) in _BLOCKS]
    return (items if chained else None), watched + chained + norms, norms


def _one_by_one(modules, x):
    for m in modules:
        x = m(x)
    return x


def _flush(run, out):
    """Append `run` to `out`: as a run to chain when it has two layers or more."""
    if len(run) >= 2:
        out.append(list(run))
    else:
        out.extend(run)
