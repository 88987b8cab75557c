"""fuse(): the DCGAN-64 models fuse into fastgan modules with the same outputs and
gradients; state_dicts are interchangeable; unfusable models come back equal."""

import copy

import pytest
import torch
from torch import nn

import dcgan
from fastgan.nn import BatchNormAct1d, BatchNormAct2d, Conv2dAct, ConvTranspose2dAct, LinearAct, fuse

FUSED = (Conv2dAct, ConvTranspose2dAct, LinearAct, BatchNormAct2d, BatchNormAct1d)


def fused_count(model):
    return sum(isinstance(m, FUSED) for m in model.modules())


def assert_same_training_step(plain, fused, x):
    out_p, out_f = plain(x), fused(x)
    assert torch.allclose(out_f, out_p, rtol=1e-4, atol=1e-5)
    up = torch.randn_like(out_p)
    gp = torch.autograd.grad(out_p, [x, *plain.parameters()], up)
    gf = torch.autograd.grad(out_f, [x, *fused.parameters()], up)
    for a, b in zip(gf, gp):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * b.abs().max().item())


@pytest.mark.parametrize("which", ["generator", "discriminator"])
def test_dcgan_fuses_and_matches(which):
    torch.manual_seed(0)
    plain = getattr(dcgan, which)()
    x = torch.randn(2, 100, 1, 1) if which == "generator" else torch.randn(2, 3, 64, 64)
    fused = fuse(plain)
    # Every conv and every batch norm of DCGAN-64 becomes a fused module.
    n_conv = sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in plain.modules())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert fused_count(fused) == n_conv + n_bn and fused_count(plain) == 0
    assert list(fused.state_dict()) == list(plain.state_dict())
    x.requires_grad_(True)
    assert_same_training_step(plain, fused, x)
    # Running statistics were updated the same way by that training-mode step.
    for a, b in zip(plain.buffers(), fused.buffers()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-6)
    plain.eval(), fused.eval()
    assert torch.allclose(fused(x), plain(x), rtol=1e-4, atol=1e-5)


def test_fuse_does_not_touch_the_original_and_shares_no_storage():
    plain = dcgan.discriminator(ndf=4)
    before = copy.deepcopy(plain.state_dict())
    fused = fuse(plain)
    with torch.no_grad():
        for p in fused.parameters():
            p.add_(1.0)
    for k, v in plain.state_dict().items():
        assert torch.equal(v, before[k])


def test_plain_checkpoint_loads_into_fused_model_and_back():
    plain, other = dcgan.generator(ngf=4), dcgan.generator(ngf=4)
    fused = fuse(other)
    fused.load_state_dict(plain.state_dict())
    plain.eval(), fused.eval()
    z = torch.randn(2, 100, 1, 1)
    assert torch.allclose(fused(z), plain(z), atol=1e-5)
    again = dcgan.generator(ngf=4)
    again.load_state_dict(fused.state_dict())
    again.eval()
    assert torch.allclose(again(z), plain(z), atol=1e-6)


def test_model_with_nothing_to_fuse_comes_back_equal():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, groups=1, dilation=2), nn.ReLU(),  # dilation: not fusable
        nn.Linear(5, 5), nn.GELU(),  # unknown activation
        nn.LeakyReLU(-0.1),  # negative slope: not fusable
    )
    fused = fuse(model)
    assert fused_count(fused) == 0
    assert [type(m) for m in fused.modules()] == [type(m) for m in model.modules()]
    assert all(torch.equal(a, b) for a, b in zip(fused.state_dict().values(), model.state_dict().values()))


def test_recognised_patterns_and_nested_sequentials():
    inner = nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 2), nn.Sigmoid())
    model = nn.Sequential(inner, nn.Linear(2, 2), nn.Tanh(), nn.Conv2d(2, 2, 1), nn.LeakyReLU(0.1))
    fused = fuse(model)
    assert isinstance(fused[0][0], LinearAct) and fused[0][0].act == "silu"
    assert isinstance(fused[0][2], LinearAct) and fused[0][2].act == "sigmoid"
    assert isinstance(fused[1], LinearAct) and fused[1].act == "tanh"
    assert isinstance(fused[3], Conv2dAct) and fused[3].act == "lrelu" and fused[3].alpha == 0.1
    x = torch.randn(3, 4)
    assert torch.allclose(fused[0](x), inner(x), atol=1e-6)


def test_fuse_is_idempotent():
    once = fuse(dcgan.discriminator(ndf=4))
    twice = fuse(once)
    assert [type(m) for m in twice.modules()] == [type(m) for m in once.modules()]


def test_fused_modules_load_plain_layer_state_dicts():
    conv, lin = nn.Conv2d(3, 5, 3, 2, 1), nn.Linear(6, 2)
    fconv, flin = Conv2dAct(3, 5, 3, 2, 1, act="relu"), LinearAct(6, 2, act="tanh")
    fconv.load_state_dict(conv.state_dict())
    flin.load_state_dict(lin.state_dict())
    x, v = torch.randn(2, 3, 8, 8), torch.randn(4, 6)
    assert torch.allclose(fconv(x), torch.relu(conv(x)), atol=1e-6)
    assert torch.allclose(flin(v), torch.tanh(lin(v)), atol=1e-6)
    tconv = nn.ConvTranspose2d(3, 2, 4, 2, 1)
    ftconv = ConvTranspose2dAct(3, 2, 4, 2, 1, act="sigmoid")
    ftconv.load_state_dict(tconv.state_dict())
    assert torch.allclose(ftconv(x), torch.sigmoid(tconv(x)), atol=1e-6)
    assert torch.allclose(ftconv(x, output_size=[17, 17]), torch.sigmoid(tconv(x, output_size=[17, 17])), atol=1e-6)


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(4, 4, 3, groups=2),
        nn.Conv2d(4, 4, 3, dilation=(1, 2)),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(4, 4, 3, padding="same"),
        nn.ConvTranspose2d(4, 4, 3, groups=4),
        nn.ConvTranspose2d(4, 4, 3, dilation=2),
    ],
    ids=["groups", "dilation", "padding_mode", "string_padding", "transposed_groups", "transposed_dilation"],
)
def test_layers_without_a_fused_form_are_left_with_their_run(layer):
    """A conv the fused modules refuse is left as it is, and so are the batch norm and
    activation after it (fusing them alone would change nothing but the module types);
    the model computes what it did."""
    model = nn.Sequential(layer, nn.BatchNorm2d(4), nn.ReLU())
    fused = fuse(model)
    assert [type(m) for m in fused] == [type(layer), nn.BatchNorm2d, nn.ReLU]
    x = torch.randn(2, 4, 9, 9)
    assert torch.equal(fused(x), model(x))


def test_linear_batchnorm1d_activation_runs_fuse():
    """Linear -> BatchNorm1d -> act (the MLP generator's block) fuses into LinearAct +
    BatchNormAct1d with the same outputs, gradients and running statistics."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.LeakyReLU(0.2), nn.Linear(5, 3), nn.BatchNorm1d(3),
                          nn.Tanh())
    fused = fuse(plain)
    assert [type(m) for m in fused] == [LinearAct, BatchNormAct1d, nn.Identity, LinearAct, BatchNormAct1d, nn.Identity]
    assert fused[1].act == "lrelu" and fused[1].alpha == 0.2 and fused[0].act == "linear"
    assert list(fused.state_dict()) == list(plain.state_dict())
    # float64: a linear bias before a batch norm has an exactly-zero gradient, which
    # float32 rounding turns into noise no relative tolerance can compare.
    plain, fused = plain.double(), fused.double()
    x = torch.randn(7, 6, dtype=torch.float64, requires_grad=True)
    out_p, out_f = plain(x), fused(x)
    torch.testing.assert_close(out_f, out_p, rtol=1e-10, atol=1e-12)
    up = torch.randn_like(out_p)
    gp = torch.autograd.grad(out_p, [x, *plain.parameters()], up)
    gf = torch.autograd.grad(out_f, [x, *fused.parameters()], up)
    for a, b in zip(gf, gp):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    for a, b in zip(plain.buffers(), fused.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    plain.eval(), fused.eval()
    torch.testing.assert_close(fused(x), plain(x), rtol=1e-10, atol=1e-12)


def test_batchnorm1d_after_a_conv_is_not_fused():
    """BatchNorm2d follows a conv and BatchNorm1d a linear: a mismatched pair is left as
    it is (the head alone still fuses with nothing: its next module is no activation)."""
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm2d(4), nn.ReLU())
    assert [type(m) for m in fuse(model)] == [nn.Linear, nn.BatchNorm2d, nn.ReLU]
