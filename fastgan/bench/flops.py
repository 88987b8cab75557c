"""FLOPs of the layers that do the arithmetic: convolution, transposed convolution and
linear layers (2 FLOPs per multiply-add; other ops are neglected).

Convention (the one the published DCGAN figures and torch.utils.flop_counter use): every kernel tap
counts, taps on padding included; a transposed convolution does
N * H_in * W_in * C_in * C_out * kh * kw multiply-adds (a zero-insertion form would
do 4x more at stride 2; the useful work is this). A backward pass costs one forward's
FLOPs for the input gradient when the input needs one, and one for the weight
gradient when the weight needs one.

`count_flops` counts a piece of code by running it with forward hooks on those layers:
it counts what the code executes (D called three times in a GAN step, the first
layer's input gradient skipped where the input needs none), assuming, as a training
step does, that every forward call is later backpropagated.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

from torch import nn


def conv_macs(x_shape, w_shape, out_shape, *, transposed: bool) -> int:
    """Forward multiply-adds of one conv (weight as torch stores it)."""
    n = x_shape[0]
    taps = math.prod(w_shape[2:])
    if transposed:  # weight [C_in, C_out/groups, kh, kw]: every input pixel meets every tap
        return n * math.prod(x_shape[2:]) * w_shape[0] * w_shape[1] * taps
    # weight [C_out, C_in/groups, kh, kw]: every output pixel meets every tap
    return n * math.prod(out_shape[2:]) * w_shape[0] * w_shape[1] * taps


def linear_macs(x_shape, w_shape) -> int:
    return math.prod(x_shape[:-1]) * w_shape[0] * w_shape[1]


def module_forward_flops(module: nn.Module, x_shape, out_shape) -> int:
    if isinstance(module, nn.Linear):
        return 2 * linear_macs(x_shape, module.weight.shape)
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return 2 * conv_macs(x_shape, module.weight.shape, out_shape, transposed=isinstance(module, nn.ConvTranspose2d))
    raise TypeError(f"no FLOP formula for {type(module).__name__}")


COUNTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


class FlopCount:
    """Totals gathered by count_flops: forward, backward and per-layer records."""

    def __init__(self):
        self.forward = 0
        self.backward = 0
        self.layers: list[dict] = []

    @property
    def total(self) -> int:
        return self.forward + self.backward

    def add(self, name: str, module: nn.Module, x, out) -> None:
        fwd = module_forward_flops(module, tuple(x.shape), tuple(out.shape))
        bwd = (fwd if x.requires_grad else 0) + (fwd if module.weight.requires_grad else 0)
        self.forward += fwd
        self.backward += bwd
        self.layers.append({"layer": name, "type": type(module).__name__, "forward": fwd, "backward": bwd})


@contextlib.contextmanager
def count_flops(*models: nn.Module) -> Iterator[FlopCount]:
    """Counts the conv / transposed conv / linear layers of `models` that run inside
    the block (fused fastgan layers too: they subclass the torch.nn layers)."""
    count = FlopCount()
    handles = []
    for index, model in enumerate(models):
        for name, module in model.named_modules():
            if isinstance(module, COUNTED):
                label = f"{index}.{name}" if len(models) > 1 else name

                def hook(mod, inputs, output, _label=label):
                    count.add(_label, mod, inputs[0], output)

                handles.append(module.register_forward_hook(hook))
    try:
        yield count
    finally:
        for handle in handles:
            handle.remove()
