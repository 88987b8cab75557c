"""Fused modules. Each subclasses the torch.nn layer it fuses, so parameters, buffers,
initialisation and state_dict keys are those of nn.Conv2d, nn.ConvTranspose2d,
nn.Linear and nn.BatchNorm2d: a plain model's state_dict loads into the fused one,
and code that checks isinstance(m, nn.Conv2d) (weight init) keeps working.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import _validate as V
from .. import functional as FG
from ..reference.activations import lookup
from ..reference.loss import KINDS, REDUCTIONS


class _ActMixin:
    def _set_activation(self, act, alpha, gain, clamp):
        self.act, self.alpha, self.gain, self.clamp = V.activation(act, alpha, gain, clamp)

    def _act_kwargs(self):
        return dict(act=self.act, alpha=self.alpha, gain=self.gain, clamp=self.clamp)

    def _activation(self):
        """(act, alpha, gain, clamp) as checked when the module was built."""
        return (self.act, self.alpha, self.gain, self.clamp)

    def _act_repr(self):
        text = f"act={self.act}"
        if lookup(self.act).uses_alpha:
            text += f", alpha={self.alpha}"
        if self.gain != 1.0:
            text += f", gain={self.gain}"
        if self.clamp is not None:
            text += f", clamp={self.clamp}"
        return text


def _int_padding(padding):
    if isinstance(padding, str):
        raise ValueError(f"padding must be an int or a pair of ints, got {padding!r} (string padding is not supported)")
    return V.pair("padding", padding, minimum=0)


def _conv_only_defaults(dilation, groups, padding_mode):
    """The nn.Conv2d arguments the fused kernels have no form for: accepted at their
    defaults (so a layer's arguments carry over), refused otherwise, by name."""
    V.unsupported("dilation", dilation)
    V.unsupported("groups", groups)
    if padding_mode != "zeros":
        raise ValueError(f"padding_mode={padding_mode!r} is not supported by fastgan (only padding_mode='zeros')")


class Conv2dAct(_ActMixin, nn.Conv2d):
    """nn.Conv2d followed by bias + activation (+ gain, clamp), in one fused op."""

    def __init__(
        self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
        padding_mode="zeros", *, act="linear", alpha=None, gain=None, clamp=None, device=None, dtype=None,
    ):
        _conv_only_defaults(dilation, groups, padding_mode)
        self._set_activation(act, alpha, gain, clamp)
        super().__init__(
            in_channels, out_channels, kernel_size, V.pair("stride", stride, minimum=1), _int_padding(padding),
            bias=bias, device=device, dtype=dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return FG.conv_for_module(x, self.weight, self.bias, tuple(self.stride), tuple(self.padding), (0, 0), False,
                                  self._activation())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._act_repr()}"


class ConvTranspose2dAct(_ActMixin, nn.ConvTranspose2d):
    """nn.ConvTranspose2d followed by bias + activation (+ gain, clamp), in one fused op."""

    def __init__(
        self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1, bias=True,
        dilation=1, padding_mode="zeros", *, act="linear", alpha=None, gain=None, clamp=None, device=None,
        dtype=None,
    ):
        _conv_only_defaults(dilation, groups, padding_mode)
        self._set_activation(act, alpha, gain, clamp)
        super().__init__(
            in_channels, out_channels, kernel_size, V.pair("stride", stride, minimum=1), _int_padding(padding),
            V.pair("output_padding", output_padding, minimum=0), bias=bias, device=device, dtype=dtype,
        )

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        output_padding = self.output_padding
        if output_size is not None:
            output_padding = self._output_padding(
                x, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
            )
        return FG.conv_for_module(x, self.weight, self.bias, tuple(self.stride), tuple(self.padding),
                                  tuple(output_padding), True, self._activation())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._act_repr()}"


class LinearAct(_ActMixin, nn.Linear):
    """nn.Linear followed by bias + activation (+ gain, clamp), in one fused op."""

    def __init__(
        self, in_features, out_features, bias=True, *,
        act="linear", alpha=None, gain=None, clamp=None, device=None, dtype=None,
    ):
        self._set_activation(act, alpha, gain, clamp)
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return FG.linear_for_module(x, self.weight, self.bias, self._activation())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._act_repr()}"


class _BatchNormActMixin(_ActMixin):
    """The forward shared by the fused batch norms: nn.BatchNorm's running-stat
    bookkeeping (num_batches_tracked, momentum=None cumulative averaging, eval
    behaviour), then one fused op."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        return self._normalize(x, *self._step())

    def _step(self):
        """One forward's bookkeeping (counts the batch when training): (running mean,
        running var (None when not kept), use batch statistics, momentum factor)."""
        tracked = self._batch_counter()
        if tracked is not None:
            tracked.add_(1)
        return self._counted_step()

    def _batch_counter(self):
        """num_batches_tracked when this forward counts a batch (training and tracking
        running statistics), else None."""
        # The buffers read from _buffers directly: nn.Module.__getattr__ per read is a
        # Python call, and every fused batch-norm forward of a training step comes here.
        if self.training and self.track_running_stats:
            return self._buffers.get("num_batches_tracked")
        return None

    def _step_for_launch(self):
        """_step for a forward whose normalize launch counts the batch itself
        (fastgan.ops.conv_bn): (running mean, running var, use batch statistics,
        momentum factor, counter), where counter is the num_batches_tracked the launch
        is to count the batch in, or None: nothing to count, or counted here already
        (momentum=None reads the count for its factor)."""
        counter = self._batch_counter()
        if counter is not None and self.momentum is None:
            counter.add_(1)
            counter = None
        return (*self._counted_step(), counter)

    def _counted_step(self):
        """_step's result once the batch is counted (or once its counting is left to
        the normalize launch: _step_for_launch)."""
        buffers, training, momentum = self._buffers, self.training, self.momentum
        running_mean, running_var = buffers.get("running_mean"), buffers.get("running_var")
        factor = 0.0 if momentum is None else momentum
        if momentum is None:
            tracked = self._batch_counter()
            if tracked is not None:
                factor = 1.0 / float(tracked)
        use_batch_stats = training or (running_mean is None and running_var is None)
        keep = not training or self.track_running_stats
        return running_mean if keep else None, running_var if keep else None, use_batch_stats, factor

    def _normalize(self, x, running_mean, running_var, use_batch_stats, factor):
        return FG.batch_norm_for_module(
            x, running_mean, running_var, self.weight, self.bias, use_batch_stats, factor, self.eps, self.act,
            self.alpha,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._act_repr()}"


class BatchNormAct2d(_BatchNormActMixin, nn.BatchNorm2d):
    """nn.BatchNorm2d followed by an activation, in one fused op (same running-stat
    updates, momentum=None cumulative averaging and eval behaviour as nn.BatchNorm2d)."""

    def __init__(
        self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, *,
        act="linear", alpha=None, device=None, dtype=None,
    ):
        self._set_activation(act, alpha, None, None)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)


class BatchNormAct1d(_BatchNormActMixin, nn.BatchNorm1d):
    """nn.BatchNorm1d followed by an activation, in one fused op: x [N, C] or [N, C, L],
    the same running-stat updates and eval behaviour as nn.BatchNorm1d."""

    def __init__(
        self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, *,
        act="linear", alpha=None, device=None, dtype=None,
    ):
        self._set_activation(act, alpha, None, None)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)


class FoldedBatchNorm2d(BatchNormAct2d):
    """The batch norm + act of a conv -> batch norm -> act block (Conv2dBatchNormAct,
    ConvTranspose2dBatchNormAct) that runs inside the block: it keeps the parameters,
    running statistics and settings at the place (and state_dict keys) of the
    nn.BatchNorm2d it stands for, and its own forward passes its input through. Made
    by fuse(); fastgan.nn.convert_sync_batchnorm splits the block again (a block's
    statistics are not synchronised across processes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _conv_bn_ops():
    """fastgan.ops.conv_bn, imported on first use (it imports the Triton kernels)."""
    global _CONV_BN
    if _CONV_BN is None:
        from ..ops import conv_bn

        _CONV_BN = conv_bn
    return _CONV_BN


_CONV_BN = None


class _ConvBatchNormMixin:
    """conv -> batch norm -> act with batch statistics as one fused op on the Triton
    kernels in eager mode (fastgan.ops.conv_bn); everywhere else (eval with running
    statistics, torch.compile / export, backend 'reference') the separate ops of
    Conv2dAct and BatchNormAct2d, in that order: the results of those two modules."""

    def _attach_norm(self, norm: FoldedBatchNorm2d) -> None:
        # Not a submodule: the batch norm is its Sequential's child (state_dict keys).
        object.__setattr__(self, "norm", norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.norm
        running_mean, running_var, use_batch_stats, factor, counter = norm._step_for_launch()
        if use_batch_stats and isinstance(x, torch.Tensor) and x.dim() == 4:
            w, b = self.weight, self.bias
            xa = x
            if torch.is_autocast_enabled(x.device.type):
                xa, w, b = V.autocast(x, w, b)
            if FG._path(xa, w, b, norm.weight, norm.bias, running_mean, running_var) == "triton":
                conv_bn = _conv_bn_ops()
                # Tuples (nn.Conv2d keeps them so): hashable, for conv_bn's per-geometry cache.
                geometry = (tuple(self.stride), tuple(self.padding), tuple(self._block_output_padding()),
                            self._block_transposed)
                return conv_bn.conv_batch_norm_act(xa, w, b, norm.weight, norm.bias, geometry, norm.eps, norm.act,
                                                   norm.alpha, (running_mean, running_var, factor, counter))
        if counter is not None:
            counter.add_(1)
        return norm._normalize(super().forward(x), running_mean, running_var, use_batch_stats, factor)


class Conv2dBatchNormAct(_ConvBatchNormMixin, Conv2dAct):
    """nn.Conv2d -> nn.BatchNorm2d -> activation, the batch norm's statistics reduced in
    the conv's epilogue and its input gradient folded into the conv's backward (see
    fastgan.ops.conv_bn). The conv's parameters are this module's; the batch norm's
    live in `norm`, a FoldedBatchNorm2d that stays where the batch norm was."""

    _block_transposed = False

    def __init__(self, *args, norm: FoldedBatchNorm2d, **kwargs):
        super().__init__(*args, **kwargs)
        self._attach_norm(norm)

    def _block_output_padding(self):
        return (0, 0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, norm={self.norm.num_features}, norm_act={self.norm.act}"


class ConvTranspose2dBatchNormAct(_ConvBatchNormMixin, ConvTranspose2dAct):
    """nn.ConvTranspose2d -> nn.BatchNorm2d -> activation as Conv2dBatchNormAct."""

    _block_transposed = True

    def __init__(self, *args, norm: FoldedBatchNorm2d, **kwargs):
        super().__init__(*args, **kwargs)
        self._attach_norm(norm)

    def _block_output_padding(self):
        return self.output_padding

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, norm={self.norm.num_features}, norm_act={self.norm.act}"


class GANLoss(nn.Module):
    """The adversarial loss of one kind, for both players.

        loss = GANLoss("hinge")
        d_loss = loss.discriminator(D(real), D(fake.detach()))
        g_loss = loss.generator(D(fake))

    Calling the module does the same: loss(fake_logits) is the generator loss,
    loss(fake_logits, real_logits) the discriminator loss.
    """

    def __init__(self, kind: str = "nonsaturating", *, real_label: float = 1.0, reduction: str = "mean"):
        super().__init__()
        self.kind = V.choice("kind", kind, KINDS)
        self.reduction = V.choice("reduction", reduction, REDUCTIONS)
        self.real_label = V.real_label(self.kind, real_label)

    def discriminator(self, real_logits, fake_logits):
        return FG.discriminator_loss(
            real_logits, fake_logits, self.kind, real_label=self.real_label, reduction=self.reduction
        )

    def generator(self, fake_logits):
        return FG.generator_loss(fake_logits, self.kind, reduction=self.reduction)

    def forward(self, fake_logits, real_logits=None):
        if real_logits is None:
            return self.generator(fake_logits)
        return self.discriminator(real_logits, fake_logits)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, real_label={self.real_label}, reduction={self.reduction}"
