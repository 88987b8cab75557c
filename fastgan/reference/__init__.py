"""Pure-PyTorch reference for every fastgan op: the test oracle and the CPU path.

Each module exposes the op with its public signature (plain PyTorch composition,
differentiable by autograd) and the backend functions that fastgan.ops dispatches to;
fastgan.kernels implements the same backend functions in Triton.
"""

from .activations import ACTIVATIONS, DEFAULT_ALPHA, act_grad, bias_act
from .batch_norm import batch_norm_act
from .conv import conv2d_bias_act, conv_transpose2d_bias_act
from .linear import linear_bias_act
from .loss import KINDS, REDUCTIONS, discriminator_loss, generator_loss

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_ALPHA",
    "KINDS",
    "REDUCTIONS",
    "act_grad",
    "bias_act",
    "batch_norm_act",
    "conv2d_bias_act",
    "conv_transpose2d_bias_act",
    "discriminator_loss",
    "generator_loss",
    "linear_bias_act",
]
