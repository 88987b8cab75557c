"""fastgan.models: the DCGAN-64 configuration is the pytorch/examples model, every size /
channel count / condition kind / conditioning mode has the right shapes, conditioning
changes the output, configs rebuild the models, bad arguments are refused."""

import pytest
import torch

import dcgan
from fastgan.models import (
    Condition,
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    build,
)

SIZES = (8, 16, 32, 64, 128, 256)
CONDS = {"none": 0, "label": 10, "attributes": 5, "user": 50}


def condition(kind, n, generator=None):
    if kind == "none":
        return None
    if kind == "attributes":
        return (torch.rand(n, CONDS[kind], generator=generator) > 0.5).float()
    return torch.randint(CONDS[kind], (n,), generator=generator)


def perturb(model, scale=0.3):
    """Random weights everywhere (conditional batch norm starts as plain batch norm)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model


@pytest.mark.parametrize("which", ["generator", "discriminator"])
def test_dcgan64_is_the_pytorch_examples_model(which):
    torch.manual_seed(0)
    ours = DCGANGenerator() if which == "generator" else DCGANDiscriminator()
    plain = getattr(dcgan, which)()
    assert [v.shape for v in ours.state_dict().values()] == [v.shape for v in plain.state_dict().values()]
    ours.load_state_dict(dict(zip(ours.state_dict(), plain.state_dict().values())))
    if which == "generator":
        z = torch.randn(4, 100)
        assert torch.allclose(ours(z), plain(z[:, :, None, None]), atol=1e-5)
    else:
        x = torch.randn(4, 3, 64, 64)
        # The example ends in a sigmoid; ours returns the logits the losses take.
        assert torch.allclose(torch.sigmoid(ours(x)), plain(x).flatten(), atol=1e-5)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes_every_size(size, channels):
    g = DCGANGenerator(size, channels, width=2, latent_dim=6, cond_kind="label", cond_size=10)
    d = DCGANDiscriminator(size, channels, width=2, cond_kind="label", cond_size=10)
    c = torch.tensor([3, 7])
    x = g(torch.randn(2, 6), c)
    assert x.shape == (2, channels, size, size)
    assert x.abs().max() <= 1  # tanh
    assert d(x, c).shape == (2,)
    assert d.features(x).shape[2:] == (4, 4)


# Conditional batch norm without batch norm is refused (test_bad_arguments).
@pytest.mark.parametrize("kind", list(CONDS))
@pytest.mark.parametrize("mode,norm", [("cbn", "batch"), ("concat", "batch"), ("concat", "none")])
def test_dcgan_shapes_every_condition(kind, mode, norm):
    g = DCGANGenerator(16, 3, width=4, latent_dim=8, norm=norm, cond_kind=kind, cond_size=CONDS[kind], cond_mode=mode,
                       extra_layers=1, cond_dim=6)
    d = DCGANDiscriminator(16, 3, width=4, norm=norm, cond_kind=kind, cond_size=CONDS[kind], extra_layers=1)
    c = condition(kind, 3)
    x = g(torch.randn(3, 8), c)
    assert x.shape == (3, 3, 16, 16)
    assert d(x, c).shape == (3,)
    assert build(g.config()).config() == g.config() and build(d.config()).config() == d.config()


def test_dcgan_channel_plan_and_cap():
    g = DCGANGenerator(128, 3, width=8, latent_dim=4)
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    # 4 -> 8 -> ... -> 64 hidden, capped at 8 * width, halving towards the image.
    assert [m.out_channels for m in convs] == [64, 64, 32, 16, 8, 3]
    g = DCGANGenerator(128, 3, width=8, latent_dim=4, max_channels=1000)
    assert [m.out_channels for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)][0] == 128


@pytest.mark.parametrize("kind", ["label", "attributes", "user"])
@pytest.mark.parametrize("mode", ["cbn", "concat"])
def test_condition_changes_generator_output(kind, mode):
    torch.manual_seed(0)
    g = perturb(DCGANGenerator(8, 1, width=8, latent_dim=8, cond_kind=kind, cond_size=CONDS[kind], cond_mode=mode)).eval()
    z = torch.randn(1, 8).repeat(2, 1)
    c = condition(kind, 2, torch.Generator().manual_seed(3))
    if kind != "attributes":
        c = torch.tensor([1, 2])
    else:
        c = torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 1, 0, 0.5]])
    x = g(z, c)
    assert (x[0] - x[1]).abs().max() > 1e-3
    # Same noise and same condition: same sample (the difference is the condition's).
    assert torch.allclose(g(z, c[[0, 0]])[1], x[0], atol=1e-6)


def test_conditional_batch_norm_starts_as_plain_batch_norm():
    g = DCGANGenerator(8, 1, width=8, latent_dim=8, cond_kind="label", cond_size=10, cond_mode="cbn").eval()
    z = torch.randn(1, 8).repeat(2, 1)
    x = g(z, torch.tensor([1, 2]))
    assert torch.equal(x[0], x[1])


@pytest.mark.parametrize("kind", ["label", "attributes", "user"])
def test_projection_changes_discriminator_output(kind):
    torch.manual_seed(0)
    d = DCGANDiscriminator(8, 1, width=8, cond_kind=kind, cond_size=CONDS[kind]).eval()
    x = torch.randn(1, 1, 8, 8).repeat(2, 1, 1, 1)
    c = torch.tensor([1, 2]) if kind != "attributes" else torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 1, 0, 0.5]])
    out = d(x, c)
    assert abs(out[0] - out[1]) > 1e-4
    # Projection: logit = head(h) + <embed(c), sum_hw h>.
    h = d.features(x)
    expected = d.head(h).flatten() + (d.projection(c) * h.sum((2, 3))).sum(1)
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("kind", list(CONDS))
@pytest.mark.parametrize("g_mode,norm", [("concat", "none"), ("cbn", "batch")])
@pytest.mark.parametrize("d_mode", ["projection", "concat"])
def test_mlp_shapes_and_conditioning(kind, g_mode, norm, d_mode):
    torch.manual_seed(0)
    g = MLPGenerator(7, 4, (16, 16), norm=norm, cond_kind=kind, cond_size=CONDS[kind], cond_mode=g_mode, out_act="sigmoid")
    d = MLPDiscriminator(7, (16,), cond_kind=kind, cond_size=CONDS[kind], cond_mode=d_mode)
    perturb(g)
    g.eval()
    c = condition(kind, 4)
    z = torch.randn(1, 4).repeat(4, 1)
    x = g(z, c)
    assert x.shape == (4, 7) and ((x >= 0) & (x <= 1)).all()
    assert d(x, c).shape == (4,)
    if kind != "none":
        c2 = torch.roll(c, 1, 0)
        differs = (c2 != c).flatten(1).any(1) if c.dim() > 1 else c2 != c
        assert (g(z, c2) - x)[differs].abs().max() > 1e-4
        assert (d(x, c2) - d(x, c))[differs].abs().max() > 1e-5
    assert build(g.config()).config() == g.config() and build(d.config()).config() == d.config()


def test_mlp_generator_of_the_condition_alone():
    g = MLPGenerator(10, 0, (8,), cond_kind="attributes", cond_size=10, out_act="sigmoid")
    profile = torch.rand(3, 10)
    assert g(torch.empty(3, 0), profile).shape == (3, 10)


def test_build_rebuilds_weights():
    g = DCGANGenerator(16, 3, width=4, latent_dim=8, cond_kind="user", cond_size=20)
    rebuilt = build(g.config())
    rebuilt.load_state_dict(g.state_dict())
    z, c = torch.randn(2, 8), torch.tensor([0, 19])
    assert torch.equal(rebuilt.eval()(z, c), g.eval()(z, c))


def test_bad_arguments():
    with pytest.raises(ValueError, match="size must be a power of two from 8 to 256, got 12"):
        DCGANGenerator(12)
    with pytest.raises(ValueError, match="size must be a power of two"):
        DCGANDiscriminator(512)
    with pytest.raises(ValueError, match="cond_kind must be one of"):
        DCGANGenerator(8, cond_kind="class")
    with pytest.raises(ValueError, match="cond_size must be the number of classes"):
        DCGANGenerator(8, cond_kind="label")
    with pytest.raises(ValueError, match="cond_mode='cbn' needs norm='batch'"):
        DCGANGenerator(8, cond_kind="label", cond_size=3, norm="none")
    with pytest.raises(ValueError, match="latent_dim=0 needs a condition"):
        MLPGenerator(2, 0)
    with pytest.raises(ValueError, match="model' is one of"):
        build({"model": "os.system"})
    g = DCGANGenerator(8, 1, width=4, latent_dim=4, cond_kind="label", cond_size=3)
    with pytest.raises(ValueError, match=r"c must be an integer tensor \[N\] of class indices"):
        g(torch.randn(2, 4), torch.rand(2))
    with pytest.raises(ValueError, match="c holds 3 conditions for a batch of 2"):
        g(torch.randn(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="the condition c must be a torch.Tensor"):
        g(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"z must be \[N, 4\]"):
        g(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unconditional"):
        DCGANDiscriminator(8, 1, width=4)(torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"c must be a float tensor \[N, 5\] of attributes"):
        Condition("attributes", 5, 4).check(torch.rand(2, 4), 2)
