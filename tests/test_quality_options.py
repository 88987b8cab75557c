"""The options added for the quality targets (docs/quality.md): DiffAugment
(fastgan.train.augment), the minibatch-std feature and PacGAN packing of the DCGAN
discriminator, and how the Trainer and `fastgan train` use them."""

import pytest
import torch

from fastgan.data import ring
from fastgan.models import DCGANDiscriminator, build
from fastgan.models.dcgan import minibatch_std
from fastgan.train import Trainer
from fastgan.train.augment import augment, color, cutout, parse_policy, translation
from test_trainer import FULL, small_data, small_models


def _images(n=16, channels=1, size=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=gen, dtype=torch.float64) * 2 - 1


def _shifted(x, dy, dx):
    """x [C, H, W] moved by (dy, dx) (content at (i, j) goes to (i - dy, j - dx)), zero-filled."""
    out = torch.zeros_like(x)
    h, w = x.shape[1:]
    for i in range(h):
        for j in range(w):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                out[:, i, j] = x[:, i + dy, j + dx]
    return out


def test_translation_shifts_each_image_by_at_most_an_eighth_zero_filled():
    x = _images(32, channels=3, size=16)
    out = translation(x, torch.Generator().manual_seed(1))
    offsets = set()
    for a, b in zip(x, out):
        match = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(b, _shifted(a, dy, dx))]
        assert len(match) == 1, "each output must be its input shifted by 2 pixels or less (16 px / 8)"
        offsets.add(match[0])
    assert len(offsets) > 5  # the shifts vary across the batch


def test_cutout_zeroes_one_square_of_half_the_size_and_keeps_the_rest():
    x = _images(64) + 3  # no pixel is 0 before the cutout
    out = cutout(x, torch.Generator().manual_seed(2))
    sizes = []
    for a, b in zip(x, out):
        zero = b[0] == 0
        kept = ~zero
        assert torch.equal(b[0][kept], a[0][kept])
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert len(rows) and len(cols) and int(zero.sum()) == len(rows) * len(cols)  # one rectangle
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all() and len(rows) <= 4 and len(cols) <= 4
        sizes.append(int(zero.sum()))
    assert max(sizes) == 16 and min(sizes) < 16  # 4x4 inside the image, clipped at a border


def test_color_is_a_per_image_affine_map_within_the_papers_ranges():
    x = _images(32)
    out = color(x, torch.Generator().manual_seed(3))
    for a, b in zip(x.flatten(1), out.flatten(1)):
        # Single channel: out = contrast * (a + brightness - mean) + mean, i.e. affine in a.
        slope = (b[1:] - b[0]) / (a[1:] - a[0])
        assert torch.allclose(slope, slope[0].expand_as(slope), atol=1e-9)
        assert 0.5 <= slope[0] < 1.5
        assert -0.5 <= (b.mean() - a.mean()).item() < 0.5  # the brightness offset (contrast keeps the mean)


def test_augment_is_differentiable_and_reproducible_from_the_generator():
    x = _images(8).requires_grad_()
    policy = parse_policy("color,translation,cutout")
    out = augment(x, policy, torch.Generator().manual_seed(4))
    again = augment(x, policy, torch.Generator().manual_seed(4))
    assert torch.equal(out, again) and not torch.equal(out, augment(x, policy, torch.Generator().manual_seed(5)))
    assert torch.autograd.gradcheck(lambda t: augment(t, policy, torch.Generator().manual_seed(4)), (x[:2],))


def test_policy_errors_name_the_argument():
    assert parse_policy(None) == () and parse_policy("") == ()
    assert parse_policy(" translation , cutout") == ("translation", "cutout")
    with pytest.raises(ValueError, match="augment.*flip"):
        parse_policy("translation,flip")
    with pytest.raises(ValueError, match="twice"):
        parse_policy("cutout,cutout")


def test_minibatch_std_feature_is_the_group_std_averaged_over_features():
    h = torch.randn(8, 5, 4, 4, dtype=torch.float64)
    out = minibatch_std(h, 4)
    assert out.shape == (8, 6, 4, 4) and torch.equal(out[:, :5], h)
    # Groups of 4: samples i, i+2, i+4, i+6 (the StyleGAN layout) share one value.
    for i in range(8):
        group = h[i % 2::2]
        want = (group.var(0, unbiased=False) + 1e-8).sqrt().mean()
        assert torch.allclose(out[i, 5], want.expand(4, 4))
    # Identical samples: the feature drops to sqrt(1e-8); an odd batch still works.
    same = minibatch_std(h[:1].expand(6, -1, -1, -1), 4)
    assert torch.allclose(same[:, 5], torch.full((6, 4, 4), 1e-4, dtype=torch.float64))
    assert minibatch_std(h[:7], 4).shape == (7, 6, 4, 4)


def test_discriminator_with_minibatch_std_reads_the_batch_and_rebuilds_from_config():
    torch.manual_seed(0)
    d = DCGANDiscriminator(8, 1, width=8, extra_layers=1, norm="none", cond_kind="label", cond_size=3, mbstd_group=4)
    x, c = torch.randn(8, 1, 8, 8), torch.arange(8) % 3
    logits = d(x, c)
    # Sample 0's logit depends on the other members of its group (a batch statistic).
    other = x.clone()
    other[2] = torch.randn(1, 8, 8)
    assert not torch.allclose(d(other, c)[0], logits[0])
    again = build(d.config())
    again.load_state_dict(d.state_dict())
    assert again.mbstd_group == 4 and torch.equal(again(x, c), logits)
    assert "mbstd_group" not in DCGANDiscriminator(8, 1, width=8).config() or \
        DCGANDiscriminator(8, 1, width=8).config()["mbstd_group"] == 0
    with pytest.raises(ValueError, match="mbstd_group"):
        DCGANDiscriminator(8, 1, width=8, mbstd_group=-1)


def test_trainer_shows_d_augmented_images_only_when_asked():
    seen = []

    def spy(module, args):
        seen.append(args[0].detach().clone())

    data = small_data()
    for policy, want_augmented in (("", False), ("cutout", True)):
        g, d = small_models()
        trainer = Trainer(g, d, data, run_dir=None, **dict(FULL, n_critic=1, accumulate=1, r1=0.0), augment=policy)
        handle = d.register_forward_pre_hook(spy)
        seen.clear()
        torch.manual_seed(0)
        trainer.train_step()
        handle.remove()
        real_seen = seen[0]
        # The real batch D saw, against the data: cutout zeroes pixels the data has nonzero.
        zeros = (real_seen == 0).sum().item()
        assert (zeros > 0) == want_augmented
        assert trainer.settings["augment"] == policy


def test_trainer_refuses_augmenting_points_or_a_captured_step():
    from fastgan.models import MLPDiscriminator, MLPGenerator

    data = ring(n=64)
    g = MLPGenerator(2, 4, (8,), cond_kind="label", cond_size=8)
    d = MLPDiscriminator(2, (8,), cond_kind="label", cond_size=8)
    with pytest.raises(ValueError, match="augment.*not images"):
        Trainer(g, d, data, progress=False, augment="translation")
    with pytest.raises(ValueError, match="augment"):
        Trainer(*small_models(), small_data(), progress=False, augment="flip")


def test_cli_augment_and_mbstd_options(tmp_path, capsys):
    from fastgan.cli import main

    assert main(["train", "--augment", "flip", "--out", str(tmp_path / "a")]) == 2
    assert "--augment" in capsys.readouterr().err
    assert main(["train", "--data", "ring", "--augment", "translation", "--out", str(tmp_path / "b")]) == 2
    assert "--augment" in capsys.readouterr().err
    assert main(["train", "--data", "grid", "--d-mbstd", "4", "--out", str(tmp_path / "c")]) == 2
    assert "--d-mbstd" in capsys.readouterr().err


def test_packed_discriminator_judges_consecutive_samples_together():
    torch.manual_seed(0)
    kw = dict(width=8, extra_layers=1, norm="none", cond_kind="label", cond_size=3)
    d = DCGANDiscriminator(8, 1, pack=2, **kw)
    x, c = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 2, 1, 0])
    logits = d(x, c)
    assert logits.shape == (3,)
    # Pack 1 is samples 2 and 3: changing sample 3 (or its condition) moves logit 1 only.
    other = x.clone()
    other[3] = torch.randn(1, 8, 8)
    moved = d(other, c)
    assert torch.equal(moved[[0, 2]], logits[[0, 2]]) and not torch.allclose(moved[1], logits[1])
    c2 = c.clone()
    c2[3] = 0
    assert not torch.allclose(d(x, c2)[1], logits[1])
    # The same as a plain D whose first layer reads the two images' channels side by side
    # and whose projection adds both embeddings.
    plain = DCGANDiscriminator(8, 2, **kw)
    plain.load_state_dict(d.state_dict())
    pair = x.reshape(3, 2, 8, 8)
    h = plain.features(pair)
    emb = d.projection(c).reshape(3, 2, -1).sum(1)
    assert torch.allclose(logits, plain.head(h).flatten() + (emb * h.sum((2, 3))).sum(1), atol=1e-6)
    assert build(d.config()).pack == 2
    with pytest.raises(ValueError, match="pack=2"):
        d(x[:5], c[:5])


def test_cli_pack_must_divide_the_batch(tmp_path, capsys):
    from fastgan.cli import main

    assert main(["train", "--d-pack", "3", "--out", str(tmp_path / "a")]) == 2
    assert "--d-pack" in capsys.readouterr().err
