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


def _hook_dicts(m: nn.Module) -> list:
    """m's hook registries (registering a hook adds to one of these dicts in place)."""
    return [m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks]


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
        _, items, hook_dicts, norms = plan
        # any() of the dicts themselves: one C-level pass, no Python call per module.
        if items is None or any(hook_dicts) or not all(norm.training for norm in norms):
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
        params, layers, norms = [], [], []
        for m in modules:
            w, b = _param(m, "weight"), _param(m, "bias")
            if autocast:
                w, b = V.autocast(w, b)
            if type(m) in _BLOCKS:
                norm = m.norm
                params += (w, b, _param(norm, "weight"), _param(norm, "bias"))
                norms.append(norm)
            else:
                params += (w, b)
            layers.append(_layer(chain, m))
        if FG._path(x, *params) != "triton":
            return _one_by_one(modules, x)
        running = _block_running(modules, norms)
        return chain.run(tuple(layers), running, x, params)


def _param(m, name):
    """m.<name>: a registered parameter read from its dict (nn.Module.__getattr__ is a
    Python call per read), anything else as the attribute lookup finds it."""
    found = m._parameters
    return found[name] if name in found else getattr(m, name)


def _layer(chain, m):
    """The chain layer of module m: made once and kept on m, made again when a setting
    it was made from has changed (they are read here on every call)."""
    if type(m) in _BLOCKS:
        norm = m.norm
        settings = (m.stride, m.padding, m.output_padding, norm.eps, norm.act, norm.alpha)
    else:
        settings = (m.stride, m.padding, m.output_padding, m.act, m.alpha, m.gain, m.clamp)
    kept = m.__dict__.get("_chain_layer")
    if kept is not None and kept[0] == settings:
        return kept[1]
    if type(m) in _BLOCKS:
        # Tuples (nn.Conv2d keeps them so): hashable, for conv_bn's per-geometry cache.
        layer = chain.BlockLayer((tuple(m.stride), tuple(m.padding), tuple(m._block_output_padding()),
                                  m._block_transposed), norm.eps, norm.act, norm.alpha)
    else:
        transposed = type(m) is ConvTranspose2dAct
        layer = chain.ConvLayer(m.stride, m.padding, m.output_padding if transposed else (0, 0), transposed,
                                m._activation())
    m.__dict__["_chain_layer"] = (settings, layer)
    return layer


def _block_running(modules, norms):
    """Per module, a block's (running_mean, running_var, momentum factor, batch counter)
    or None, as each block's forward would have them (FoldedBatchNorm2d._step_for_launch:
    the block's normalize launch counts the batch)."""
    steps = iter([norm._step_for_launch() for norm in norms])
    running = []
    for m in modules:
        if type(m) in _BLOCKS:
            running_mean, running_var, _, factor, counter = next(steps)
            running.append((running_mean, running_var, factor, counter))
        else:
            running.append(None)
    return tuple(running)


def _plan(children):
    """(items, hook_dicts, norms) for these children: items as _runs returns them (None
    when there is nothing to chain), the hook registries of the modules whose hooks a
    chain would skip, and the blocks' batch norms (which must be in training mode)."""
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
    hook_dicts = [d for m in watched + chained + norms for d in _hook_dicts(m)]
    return (items if chained else None), hook_dicts, norms


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
