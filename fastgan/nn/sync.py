"""Batch norm + activation with statistics over every process of a DDP run, and the
conversion that puts it in a model.

torch.nn.SyncBatchNorm.convert_sync_batchnorm turns every batch norm, fastgan's
BatchNormAct1d/2d included, into a plain nn.SyncBatchNorm: the fused activation is
lost without a word. `convert_sync_batchnorm` here turns BatchNormAct1d/2d into
SyncBatchNormAct (same parameters, buffers, activation) and plain batch norms into
nn.SyncBatchNorm, as torch does.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..reference.activations import activation
from .fuse import _adopt, split_blocks
from .modules import BatchNormAct1d, BatchNormAct2d, _BatchNormActMixin


class _AllReduceSum(torch.autograd.Function):
    """all_reduce(SUM) that autograd can go through (twice: R1 differentiates a
    discriminator's gradient). Every process's output is the same sum, so the gradient
    of the sum of all processes' losses with respect to one input is the sum of the
    processes' output gradients: an all_reduce again."""

    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        return total

    @staticmethod
    def backward(ctx, grad):
        return _AllReduceSum.apply(grad, ctx.group), None


class SyncBatchNormAct(_BatchNormActMixin, _BatchNorm):
    """Synchronised batch norm followed by an activation: in training, under an initialised
    process group of more than one process, mean and variance are those of the batch
    of all processes together (two all_reduces of per-channel sums forward, two
    backward); otherwise (eval, a single process) it is BatchNormAct1d/2d's fused op.

    Takes [N, C], [N, C, L] or [N, C, H, W]. Running statistics are updated with the
    global statistics, as a single process with the whole batch would update them.
    """

    def __init__(
        self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, process_group=None, *,
        act="linear", alpha=None, device=None, dtype=None,
    ):
        self._set_activation(act, alpha, None, None)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group

    def _check_input_dim(self, x):
        if x.dim() not in (2, 3, 4):
            raise ValueError(f"x must be [N, C], [N, C, L] or [N, C, H, W], got shape {tuple(x.shape)}")

    def _sync_group(self):
        """The process group to reduce over, or None when this forward does not sync."""
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return None
        group = self.process_group or dist.group.WORLD
        return group if dist.get_world_size(group) > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        group = self._sync_group()
        if group is None:
            return super().forward(x)
        self._check_input_dim(x)
        if x.shape[1] != self.num_features:
            raise ValueError(f"x must have {self.num_features} channels, got shape {tuple(x.shape)}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return self._synced_batch_norm_act(x, group, factor)

    def _synced_batch_norm_act(self, x, group, factor):
        # Statistics in float32 at least (as torch's batch norm keeps them for half inputs).
        compute = torch.promote_types(x.dtype, torch.float32)
        xc = x.to(compute)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        # The element count rides with the sums (one collective); its gradient is unused.
        local_count = xc.new_full((1,), x.numel() // x.shape[1])
        sums = _AllReduceSum.apply(torch.cat([xc.sum(dims), local_count]), group)
        count = sums[-1].detach()
        mean = sums[:-1] / count
        centred = xc - mean.view(shape)
        # Two passes (mean first, then squares about it): no E[x^2] - E[x]^2 cancellation.
        var = _AllReduceSum.apply((centred * centred).sum(dims), group) / count
        z = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None:
            z = z * self.weight.to(compute).view(shape)
        if self.bias is not None:
            z = z + self.bias.to(compute).view(shape)
        if self.training and self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                unbiased = var * (count / (count - 1))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return activation(z, self.act, self.alpha).to(x.dtype)


def _sync_from_fused(m: _BatchNormActMixin, process_group) -> SyncBatchNormAct:
    new = SyncBatchNormAct(
        m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats, process_group, act=m.act, alpha=m.alpha
    )
    # _adopt moves the parameters and buffers over (the new module's own are dropped).
    return _adopt(new, m)


def _sync_from_plain(m: _BatchNorm, process_group) -> nn.SyncBatchNorm:
    new = nn.SyncBatchNorm(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats, process_group)
    return _adopt(new, m)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """torch.nn.SyncBatchNorm.convert_sync_batchnorm that keeps fastgan's activations.

    Every BatchNormAct1d/2d (and SyncBatchNormAct) in `module` becomes a SyncBatchNormAct
    with the same activation; every other batch norm becomes an nn.SyncBatchNorm, as
    torch converts it. Parameters and buffers are the original's (not copied), and the
    module is changed in place like torch's; if `module` itself is a batch norm, the new
    module is returned. Use this rather than torch's function on a fused model: torch's
    makes each BatchNormAct a plain SyncBatchNorm and silently drops its activation.
    """
    split_blocks(module)  # a conv -> batch norm block's statistics are local: back to separate modules
    converted = module
    if isinstance(module, (BatchNormAct1d, BatchNormAct2d, SyncBatchNormAct)):
        converted = _sync_from_fused(module, process_group)
    elif isinstance(module, _BatchNorm):
        converted = _sync_from_plain(module, process_group)
    if converted is not module and hasattr(module, "qconfig"):
        converted.qconfig = module.qconfig
    for name, child in module.named_children():
        converted.add_module(name, convert_sync_batchnorm(child, process_group))
    return converted
