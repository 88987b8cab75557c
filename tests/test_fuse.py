"""fuse(): every row of the README's table fuses into fastgan modules with the same
outputs, gradients and running statistics (the DCGAN-64 models too); state_dicts are
interchangeable; what the table does not list comes back as it was."""

import copy

import pytest
import torch
from torch import nn

import dcgan
from fastgan.nn import (
    BatchNormAct1d, BatchNormAct2d, Conv2dAct, Conv2dBatchNormAct, ConvTranspose2dAct, ConvTranspose2dBatchNormAct,
    FoldedBatchNorm2d, LinearAct, fuse,
)

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
        nn.Linear(5, 5, bias=False), nn.GELU(),  # bias-free layer, unknown activation
        nn.LeakyReLU(-0.1),  # negative slope: not fusable
        nn.BatchNorm1d(5),  # a batch norm alone: nothing to fuse into it
        nn.BatchNorm3d(5), nn.ReLU(),  # no fused 3-D batch norm
        nn.SyncBatchNorm(5), nn.ReLU(),  # convert_sync_batchnorm's business, not fuse's
        nn.ConvTranspose2d(2, 2, 3, bias=False),  # bias-free layer alone
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
def test_layers_without_a_fused_form_are_left_and_the_batch_norm_after_them_fuses(layer):
    """A conv the fused modules refuse is left as it is; the batch norm + activation
    after it is a run of its own (lone BN + act); the model computes what it did."""
    model = nn.Sequential(layer, nn.BatchNorm2d(4), nn.ReLU()).double()
    fused = fuse(model)
    assert [type(m) for m in fused] == [type(layer), BatchNormAct2d, nn.Identity]
    assert fused[1].act == "relu"
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(fused(x), model(x), rtol=1e-10, atol=1e-12)


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


def test_mismatched_layer_and_batch_norm_fuse_as_two_runs():
    """BatchNorm2d follows a conv and BatchNorm1d a linear: after a Linear, a BatchNorm2d
    + act is a lone batch norm run and the Linear (with its bias) a run alone."""
    fused = fuse(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm2d(4), nn.ReLU()))
    assert [type(m) for m in fused] == [LinearAct, BatchNormAct2d, nn.Identity]
    assert fused[0].act == "linear" and fused[1].act == "relu"


def conv(bias=True):
    return nn.Conv2d(3, 4, 3, padding=1, bias=bias)


def conv_t(bias=True):
    return nn.ConvTranspose2d(3, 4, 4, 2, 1, bias=bias)


def linear(bias=True):
    return nn.Linear(6, 4, bias=bias)


IMAGE, VECTOR = (5, 3, 6, 6), (5, 6)
# One row per line of the README's "What fuse() fuses" table:
# (plain modules, input shape, [(fused type, act)] per position of the Sequential).
TABLE = {
    "conv_alone": ([conv()], IMAGE, [(Conv2dAct, "linear")]),
    "conv_t_alone": ([conv_t()], IMAGE, [(ConvTranspose2dAct, "linear")]),
    "linear_alone": ([linear()], VECTOR, [(LinearAct, "linear")]),
    "conv_bn": ([conv(False), nn.BatchNorm2d(4)], IMAGE, [(Conv2dBatchNormAct, "linear"), (FoldedBatchNorm2d, "linear")]),
    "conv_t_bn": (
        [conv_t(), nn.BatchNorm2d(4)], IMAGE, [(ConvTranspose2dBatchNormAct, "linear"), (FoldedBatchNorm2d, "linear")]
    ),
    "linear_bn": ([linear(), nn.BatchNorm1d(4)], VECTOR, [(LinearAct, "linear"), (BatchNormAct1d, "linear")]),
    "conv_act": ([conv(False), nn.ReLU()], IMAGE, [(Conv2dAct, "relu"), (nn.Identity, None)]),
    "conv_t_act": ([conv_t(), nn.Tanh()], IMAGE, [(ConvTranspose2dAct, "tanh"), (nn.Identity, None)]),
    "linear_act": ([linear(False), nn.Sigmoid()], VECTOR, [(LinearAct, "sigmoid"), (nn.Identity, None)]),
    "conv_bn_act": (
        [conv(False), nn.BatchNorm2d(4), nn.LeakyReLU(0.2)], IMAGE,
        [(Conv2dBatchNormAct, "linear"), (FoldedBatchNorm2d, "lrelu"), (nn.Identity, None)],
    ),
    "conv_t_bn_act": (
        [conv_t(False), nn.BatchNorm2d(4, momentum=None), nn.SiLU()], IMAGE,
        [(ConvTranspose2dBatchNormAct, "linear"), (FoldedBatchNorm2d, "silu"), (nn.Identity, None)],
    ),
    "linear_bn_act": (
        [linear(), nn.BatchNorm1d(4, affine=False), nn.ReLU(inplace=True)], VECTOR,
        [(LinearAct, "linear"), (BatchNormAct1d, "relu"), (nn.Identity, None)],
    ),
    "bn2d_act": ([nn.BatchNorm2d(3), nn.LeakyReLU(0.0)], IMAGE, [(BatchNormAct2d, "lrelu"), (nn.Identity, None)]),
    "bn1d_act": ([nn.BatchNorm1d(6), nn.Tanh()], VECTOR, [(BatchNormAct1d, "tanh"), (nn.Identity, None)]),
    "bn1d_act_3d_input": ([nn.BatchNorm1d(3), nn.SiLU()], (5, 3, 7), [(BatchNormAct1d, "silu"), (nn.Identity, None)]),
}


def assert_equal_models(plain, fused, shape, steps=2):
    """Same outputs, input and parameter gradients and running statistics over a few
    training-mode forwards, then the same eval output (float64: a bias before a batch
    norm has an exactly-zero gradient that float32 rounding turns into noise)."""
    for _ in range(steps):
        x = (torch.randn(shape, dtype=torch.float64) * 2 + 0.3).requires_grad_(True)
        out_p, out_f = plain(x), fused(x)
        torch.testing.assert_close(out_f, out_p, rtol=1e-10, atol=1e-12)
        up = torch.randn_like(out_p)
        gp = torch.autograd.grad(out_p, [x, *plain.parameters()], up)
        gf = torch.autograd.grad(out_f, [x, *fused.parameters()], up)
        for a, b in zip(gf, gp, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    for a, b in zip(fused.buffers(), plain.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    plain.eval(), fused.eval()
    torch.testing.assert_close(fused(x), plain(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("row", list(TABLE))
def test_every_row_of_the_fuse_table_fuses_and_computes_the_same(row):
    layers, shape, expected = TABLE[row]
    torch.manual_seed(0)
    plain = nn.Sequential(*copy.deepcopy(layers)).double()
    fused = fuse(plain)
    assert [(type(m), getattr(m, "act", None)) for m in fused] == expected
    assert list(fused.state_dict()) == list(plain.state_dict())
    alpha = [m.alpha for m in fused if getattr(m, "act", None) == "lrelu"]
    assert alpha == [getattr(m, "negative_slope", None) for m in plain if isinstance(m, nn.LeakyReLU)]
    assert_equal_models(plain, fused, shape)


def test_runs_split_across_module_boundaries_are_not_joined():
    """fuse looks at the children of one Sequential at a time: a conv + batch norm in an
    inner Sequential fuses as such; the activation after that Sequential stays a
    module; a bias-free conv alone in its Sequential stays as it is."""

    class Block(nn.Module):  # a custom forward: fuse cannot know the order of its calls
        def __init__(self):
            super().__init__()
            self.conv, self.act = nn.Conv2d(4, 4, 1), nn.ReLU()

        def forward(self, x):
            return self.act(self.conv(x))

    torch.manual_seed(0)
    plain = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)), nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 1, bias=False)), nn.Tanh(),
        Block(),
    ).double()
    fused = fuse(plain)
    assert [type(m) for m in fused[0]] == [Conv2dBatchNormAct, FoldedBatchNorm2d] and fused[0][1].act == "linear"
    assert type(fused[1]) is nn.ReLU and type(fused[3]) is nn.Tanh
    assert type(fused[2][0]) is nn.Conv2d
    assert type(fused[4].conv) is nn.Conv2d and type(fused[4].act) is nn.ReLU
    assert fused_count(fused) == 2
    assert_equal_models(plain, fused, IMAGE)


def test_readme_names_exactly_the_activations_the_registry_replaces():
    # The README's list of *act* modules is prose: adding a registry row that replaces a
    # torch.nn module (or dropping one) must show up here until the README says so.
    import pathlib
    import re

    from fastgan.reference import activations as A

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    sentence = readme[readme.index("*act* is"):].split(";")[0]
    named = set(re.findall(r"`(\w+)`", sentence))
    replaced = {row.module.__name__ for row in A.rows() if row.module is not None}
    assert named == replaced, f"README names {sorted(named)}, the registry replaces {sorted(replaced)}"
