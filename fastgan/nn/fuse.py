"""fuse(model): swap runs of consecutive children of an nn.Sequential for fastgan's
fused modules. The runs (README, "What fuse() fuses"):

    (Conv2d | ConvTranspose2d) [-> BatchNorm2d] [-> act]
    Linear [-> BatchNorm1d] [-> act]
    (BatchNorm1d | BatchNorm2d) -> act

where act is a module an activation registry row replaces (fastgan.reference.activations:
ReLU, LeakyReLU with slope >= 0, Tanh, Sigmoid, SiLU). A layer alone is
fused only if it has a bias (the bias is the epilogue fused into it); a batch norm
alone is left as it is. A layer with an argument the fused modules have no form for
(groups, dilation, a padding_mode other than 'zeros', string padding) is left as it
is; a batch norm + act after it is a run of its own. Modules outside an nn.Sequential
are left alone: fuse cannot see the order a custom forward calls them in.

A (Conv2d | ConvTranspose2d) -> BatchNorm2d [-> act] run becomes one block
(Conv2dBatchNormAct / ConvTranspose2dBatchNormAct, fastgan.ops.conv_bn: fewer kernel
launches a step) whose batch norm's parameters and buffers stay in the batch norm's
place, in a FoldedBatchNorm2d whose own forward is the identity.

The model is copied, never changed. A run of k modules is replaced in place by the
fused module(s) followed by nn.Identity padding, so every state_dict key of the
original model stays valid: the fused copy loads the original's checkpoints and back.
"""

from __future__ import annotations

import copy

from torch import nn

from ..reference import activations as A
from .modules import (
    BatchNormAct1d, BatchNormAct2d, Conv2dAct, Conv2dBatchNormAct, ConvTranspose2dAct, ConvTranspose2dBatchNormAct,
    FoldedBatchNorm2d, LinearAct,
)
from .sequential import CHAINABLE, FusedSequential


def _activation_of(module: nn.Module):
    """(act, alpha) for a module some registry row replaces, else None."""
    for row in A.rows():
        if row.replaces(module):
            alpha = row.alpha_of(module)
            # The fused backward reads the derivative off the output's sign (needs alpha >= 0).
            return (row.name, alpha) if alpha is None or alpha >= 0 else None
    return None


def _plain_conv(m: nn.Module) -> bool:
    """A convolution the fused modules can stand in for (exact type: fused ones are skipped)."""
    if type(m) not in (nn.Conv2d, nn.ConvTranspose2d):
        return False
    return (
        m.groups == 1
        and all(d == 1 for d in m.dilation)
        and m.padding_mode == "zeros"
        and not isinstance(m.padding, str)
    )


def _fusable_head(m: nn.Module) -> bool:
    return type(m) is nn.Linear or _plain_conv(m)


def _fused_head(m: nn.Module, act: str, alpha):
    like = dict(device=m.weight.device, dtype=m.weight.dtype)
    if type(m) is nn.Linear:
        new = LinearAct(m.in_features, m.out_features, m.bias is not None, act=act, alpha=alpha, **like)
    elif type(m) is nn.Conv2d:
        new = Conv2dAct(
            m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, bias=m.bias is not None,
            act=act, alpha=alpha, **like,
        )
    else:
        new = ConvTranspose2dAct(
            m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.output_padding,
            bias=m.bias is not None, act=act, alpha=alpha, **like,
        )
    return _adopt(new, m)


def _norm_after(head: nn.Module):
    """The batch norm type that may follow `head` in a fused run."""
    return nn.BatchNorm1d if type(head) is nn.Linear else nn.BatchNorm2d


def _fused_norm(m: nn.Module, act: str, alpha):
    fused_type = BatchNormAct1d if type(m) is nn.BatchNorm1d else BatchNormAct2d
    new = fused_type(
        m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats, act=act, alpha=alpha,
        device=m.weight.device if m.weight is not None else None,
        dtype=m.weight.dtype if m.weight is not None else None,
    )
    return _adopt(new, m)


def _adopt(new: nn.Module, old: nn.Module) -> nn.Module:
    """Give `new` the parameters and buffers of `old` (shared: fuse works on a copy)."""
    # Copy the slots themselves, None included (an affine norm without bias, say).
    new._parameters.update(old._parameters)
    new._buffers.update(old._buffers)
    new.train(old.training)
    return new


def _fused_block(conv: nn.Module, bn: nn.Module, act: str, alpha):
    """(block, folded batch norm): a Conv2dBatchNormAct / ConvTranspose2dBatchNormAct
    with conv's parameters, and the FoldedBatchNorm2d holding bn's, which stays in
    bn's place (so the state_dict keys do not change)."""
    norm = _adopt(FoldedBatchNorm2d(
        bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, act=act, alpha=alpha,
        device=bn.weight.device if bn.weight is not None else None,
        dtype=bn.weight.dtype if bn.weight is not None else None,
    ), bn)
    like = dict(device=conv.weight.device, dtype=conv.weight.dtype, norm=norm)
    if type(conv) is nn.Conv2d:
        block = Conv2dBatchNormAct(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                   bias=conv.bias is not None, **like)
    else:
        block = ConvTranspose2dBatchNormAct(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                            conv.padding, conv.output_padding, bias=conv.bias is not None, **like)
    return _adopt(block, conv), norm


def split_blocks(model: nn.Module) -> None:
    """Undo the conv -> batch norm -> act blocks of fuse() in place: each becomes a
    Conv2dAct / ConvTranspose2dAct and a BatchNormAct2d with the same parameters and
    buffers (convert_sync_batchnorm does this first: a block cannot synchronise its
    batch statistics across processes)."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for name, module in list(seq._modules.items()):
            if not isinstance(module, (Conv2dBatchNormAct, ConvTranspose2dBatchNormAct)):
                continue
            norm = module.norm
            for norm_name, other in seq._modules.items():
                if other is norm:
                    plain = nn.BatchNorm2d(norm.num_features, norm.eps, norm.momentum, norm.affine,
                                           norm.track_running_stats, device="meta")
                    seq._modules[norm_name] = _fused_norm(_adopt(plain, norm), norm.act, norm.alpha)
            conv_type = nn.ConvTranspose2d if isinstance(module, ConvTranspose2dBatchNormAct) else nn.Conv2d
            seq._modules[name] = _fused_head(_as_plain(module, conv_type), "linear", None)


def _as_plain(module: nn.Module, conv_type) -> nn.Module:
    """A plain conv of module's type and arguments sharing its parameters."""
    kwargs = dict(bias=module.bias is not None, device="meta")
    if conv_type is nn.ConvTranspose2d:
        plain = conv_type(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                          module.output_padding, **kwargs)
    else:
        plain = conv_type(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                          **kwargs)
    return _adopt(plain, module)


def _fuse_sequential(seq: nn.Sequential, blocks: bool) -> None:
    mods = list(seq._modules.items())

    def at(k):
        return mods[k][1] if k < len(mods) else None

    i = 0
    while i < len(mods):
        name, module = mods[i]
        if _fusable_head(module):
            has_norm = type(at(i + 1)) is _norm_after(module)
            j = i + 2 if has_norm else i + 1
            found = _activation_of(at(j))
            if not has_norm and found is None and module.bias is None:
                i += 1  # a lone bias-free layer: no epilogue to fuse
                continue
            act, alpha = found or ("linear", None)
            if has_norm and blocks and type(module) is not nn.Linear:
                seq._modules[name], seq._modules[mods[i + 1][0]] = _fused_block(module, mods[i + 1][1], act, alpha)
            elif has_norm:
                seq._modules[name] = _fused_head(module, "linear", None)
                seq._modules[mods[i + 1][0]] = _fused_norm(mods[i + 1][1], act, alpha)
            else:
                seq._modules[name] = _fused_head(module, act, alpha)
            if found is not None:
                seq._modules[mods[j][0]] = nn.Identity()
                j += 1
            i = j
        elif type(module) in (nn.BatchNorm1d, nn.BatchNorm2d) and _activation_of(at(i + 1)) is not None:
            seq._modules[name] = _fused_norm(module, *_activation_of(at(i + 1)))
            seq._modules[mods[i + 1][0]] = nn.Identity()
            i += 2
        else:
            i += 1


def fuse(model: nn.Module, *, blocks: bool = True) -> nn.Module:
    """A copy of `model` with each fusable run inside an nn.Sequential replaced by fused
    modules sharing no storage with the original. A model with nothing to fuse comes
    back as an equal copy. With `blocks` (the default), a (Conv2d | ConvTranspose2d) ->
    BatchNorm2d [-> act] run becomes one Conv2dBatchNormAct / ConvTranspose2dBatchNormAct
    block plus the FoldedBatchNorm2d holding the batch norm's state in its place;
    blocks=False fuses it as Conv2dAct / ConvTranspose2dAct + BatchNormAct2d."""
    fused = copy.deepcopy(model)
    for module in list(fused.modules()):
        if isinstance(module, nn.Sequential):
            _fuse_sequential(module, blocks)
            if type(module) is nn.Sequential and sum(type(m) in CHAINABLE for m in module) >= 2:
                # Same module otherwise; its runs of fused conv layers can run as one node.
                module.__class__ = FusedSequential
    return fused
