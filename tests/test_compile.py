"""torch.compile(fullgraph=True) of a model built from fastgan.nn: no graph break, same
outputs, gradients and running statistics as eager."""

import copy

import torch
from torch import nn

from fastgan.nn import BatchNormAct2d, Conv2dAct, ConvTranspose2dAct, GANLoss, LinearAct


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            Conv2dAct(3, 8, 3, 2, 1, act="lrelu"),
            BatchNormAct2d(8, act="relu"),
            ConvTranspose2dAct(8, 4, 4, 2, 1, act="tanh"),
            nn.Flatten(),
            LinearAct(4 * 8 * 8, 1),
        )
        self.loss = GANLoss("nonsaturating")

    def forward(self, real, fake):
        return self.loss.discriminator(self.body(real), self.body(fake))


def test_compiled_model_matches_eager():
    torch.manual_seed(0)
    eager = Small()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True)
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    want = eager(real, fake)
    want.backward()
    got = compiled(real, fake)
    got.backward()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(compiled_model.named_parameters(), eager.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6), name
    bn_c, bn_e = compiled_model.body[1], eager.body[1]
    assert torch.allclose(bn_c.running_mean, bn_e.running_mean) and torch.allclose(bn_c.running_var, bn_e.running_var)
