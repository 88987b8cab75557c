"""torch.library.opcheck on every fastgan op: schema, autograd registration, fake
(meta) implementation, and AOT dispatch with dynamic shapes."""

import pytest
import torch
from torch.library import opcheck

import fastgan  # noqa: F401

ops = torch.ops.fastgan


def r(*shape, grad=True):
    return torch.randn(*shape).requires_grad_(grad)


ACT = ("lrelu", 0.2, 1.0, None)
SILU = ("silu", 0.2, 1.5, 2.0)

CASES = {
    "conv": (ops.conv_bias_act.default, (r(2, 3, 7, 6), r(4, 3, 3, 3), r(4), [2, 2], [1, 1], [0, 0], False, *ACT)),
    "conv_silu": (ops.conv_bias_act.default, (r(2, 3, 7, 6), r(4, 3, 3, 3), None, [1, 2], [0, 1], [0, 0], False, *SILU)),
    "conv_transpose": (ops.conv_bias_act.default, (r(2, 3, 4, 5), r(3, 4, 4, 4), r(4), [2, 2], [1, 1], [1, 0], True, *ACT)),
    "conv_grad_input": (ops.conv_grad_input.default, (r(2, 4, 4, 3), r(2, 4, 4, 3), r(4, 3, 3, 3), [7, 6], [2, 2], [1, 1], False, *ACT)),
    "conv_grad_weight": (ops.conv_grad_weight.default, (r(2, 4, 4, 3), r(2, 4, 4, 3), r(2, 3, 7, 6), [3, 3], [2, 2], [1, 1], False, *ACT, True)),
    "conv_transpose_grad_weight": (ops.conv_grad_weight.default, (r(2, 4, 8, 8), r(2, 4, 8, 8), r(2, 3, 4, 4), [4, 4], [2, 2], [1, 1], True, *ACT, False)),
    "linear": (ops.linear_bias_act.default, (r(5, 7), r(3, 7), r(3), *SILU)),
    "linear_grad_input": (ops.linear_grad_input.default, (r(5, 3), r(5, 3), r(3, 7), *ACT)),
    "linear_grad_weight": (ops.linear_grad_weight.default, (r(5, 3), r(5, 3), r(5, 7), *ACT, True)),
    "batch_norm_train": (ops.batch_norm_act.default, (r(3, 4, 5, 5), r(4), r(4), torch.zeros(4), torch.ones(4), True, 1e-5, "relu", 0.2)),
    "batch_norm_eval": (ops.batch_norm_act.default, (r(3, 4, 5, 5), r(4), None, torch.zeros(4), torch.ones(4), False, 1e-5, "silu", 0.2)),
    "batch_norm_backward": (ops.batch_norm_act_backward.default, (r(3, 4, 2, 2), r(3, 4, 2, 2), r(3, 4, 2, 2), r(4), torch.zeros(4), torch.ones(4), True, 1e-5, "tanh", 0.2, True)),
    "d_loss": (ops.discriminator_loss.default, (r(6, 1), r(3, 1, 2, 2), "nonsaturating", 0.9, "mean")),
    "d_loss_none": (ops.discriminator_loss.default, (r(6), r(4), "hinge", 1.0, "none")),
    "g_loss": (ops.generator_loss.default, (r(5, 1), "lsgan", "sum")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_opcheck(name):
    op, args = CASES[name]
    opcheck(op, args)
