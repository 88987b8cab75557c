"""fastgan.Trainer: exact resume, NaN stop, checkpoint format, EMA, argument checks."""

import json

import pytest
import torch

import fastgan
from fastgan.data import ArrayData, ring
from fastgan.models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from fastgan.train import EMA, NonFiniteLossError, Trainer, load_checkpoint, load_generator
from fastgan.train.order import BatchOrder


def small_data(n=24, nan_at=None):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=gen) * 2 - 1
    if nan_at is not None:
        x[nan_at] = float("nan")
    return ArrayData(x, torch.arange(n) % 3, cond_kind="label", cond_size=3, cond_names=["a", "b", "c"])


def small_models(seed=0, norm="batch"):
    torch.manual_seed(seed)
    g = DCGANGenerator(8, 1, width=4, latent_dim=4, extra_layers=1, norm=norm, cond_kind="label", cond_size=3,
                       cond_mode="cbn" if norm == "batch" else "concat", cond_dim=4)
    d = DCGANDiscriminator(8, 1, width=4, extra_layers=1, norm=norm, cond_kind="label", cond_size=3)
    return g, d


# Every feature that carries state across steps: n_critic, lazy R1, accumulation, EMA,
# batch-norm statistics, Adam moments, the data order crossing epochs, the noise.
FULL = dict(batch_size=8, n_critic=2, r1=1.0, r1_interval=3, accumulate=2, ema=0.9, loss="hinge",
            checkpoint_every=3, sample_every=100, log_every=1, progress=False, seed=5)


def full_state(trainer):
    state = trainer.state_dict()
    out = {}
    for group in ("generator", "discriminator", "generator_ema"):
        out.update({f"{group}.{k}": v for k, v in state[group].items()})
    for group in ("g_optimizer", "d_optimizer"):
        for i, s in state[group]["state"].items():
            out.update({f"{group}.{i}.{k}": v for k, v in s.items()})
    return out


def test_resume_is_bit_identical(tmp_path):
    straight = Trainer(*small_models(), small_data(), run_dir=tmp_path / "a", **FULL)
    straight.fit(7)

    first = Trainer(*small_models(), small_data(), run_dir=tmp_path / "b", **FULL)
    first.fit(4)  # stops between checkpoints: the final checkpoint is at step 4
    assert load_checkpoint(tmp_path / "b")["step"] == 4
    torch.manual_seed(123)  # the global RNG state must not matter: it is restored
    resumed = Trainer.from_checkpoint(tmp_path / "b" / "checkpoint.pt", small_data(), run_dir=tmp_path / "b")
    assert resumed.step == 4 and resumed.settings == straight.settings
    resumed.fit(7)

    a, b = full_state(straight), full_state(resumed)
    assert a.keys() == b.keys() and len(a) > 40
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"differ after resume: {different[:5]}"
    # A resumed run that had not been resumed the same way would differ: the check has teeth.
    other = Trainer(*small_models(), small_data(), run_dir=None, **dict(FULL, seed=6))
    other.fit(7)
    assert not torch.equal(full_state(other)["generator.to_image.weight"], a["generator.to_image.weight"])
    # The metrics of the resumed run continue those of its first part, without duplicates.
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 8))


def test_checkpoint_is_plain_data_with_what_sampling_needs(tmp_path):
    trainer = Trainer(*small_models(), small_data(), run_dir=tmp_path, **dict(FULL, checkpoint_every=2))
    trainer.fit(2)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # no code: plain containers and tensors
    assert state["format"] == "fastgan-checkpoint" and state["step"] == 2 and state["d_steps"] == 4
    assert state["config"]["generator"]["model"] == "DCGANGenerator"
    assert state["config"]["trainer"]["n_critic"] == 2
    assert set(state["rng"]) == {"torch", "cuda", "noise", "order"}
    g, _ = load_generator(tmp_path)
    assert torch.equal(g.to_image.weight, trainer.ema.module.to_image.weight) and not g.training
    assert not any(p.name.endswith(".tmp") or ".tmp-" in p.name for p in tmp_path.iterdir())
    assert {"samples.png", "losses.png", "metrics.jsonl", "checkpoint.pt", "samples"} <= {p.name for p in tmp_path.iterdir()}


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    # Find the step whose real batch first contains sample 0, then make sample 0 NaN.
    order, bs, step = BatchOrder(24, seed=5), 4, 0
    while True:
        step += 1
        if (order.next(bs) == 0).any():
            break
    assert step >= 3, "pick another seed: the NaN must come after a checkpoint"
    trainer = Trainer(*small_models(norm="none"), small_data(nan_at=0), run_dir=tmp_path, batch_size=bs, ema=0.0,
                      checkpoint_every=2, log_every=1, progress=False, seed=5)
    with pytest.raises(NonFiniteLossError, match=rf"NaN or inf at step {step} .*last good checkpoint.*\(step {(step - 1) // 2 * 2}\)"):
        trainer.fit(step + 5)
    state = load_checkpoint(tmp_path)
    assert state["step"] == (step - 1) // 2 * 2
    assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in state["discriminator"].values() if v.is_floating_point())


def test_ema_follows_the_documented_decay():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(model, decay=0.5)
    values = [1.0, 3.0, 7.0]
    expected = None
    for t, v in enumerate(values):
        model.weight.data.fill_(v)
        ema.update(model)
        decay = min(0.5, (1 + t) / (10 + t))
        expected = v if expected is None else decay * expected + (1 - decay) * v
        assert ema.module.weight.item() == pytest.approx(expected)
    assert ema.updates == 3


def test_vector_data_trains_an_mlp(tmp_path):
    data = ring(n=512)
    g = MLPGenerator(2, 4, (16, 16), cond_kind="label", cond_size=8)
    d = MLPDiscriminator(2, (16, 16), cond_kind="label", cond_size=8)
    trainer = Trainer(g, d, data, run_dir=tmp_path, batch_size=32, checkpoint_every=5, sample_every=5, progress=False)
    result = trainer.fit(5)
    assert result["step"] == 5 and (tmp_path / "samples.png").stat().st_size > 1000


def test_unconditional_data_with_plain_tensor_dataset():
    g = DCGANGenerator(8, 1, width=4, latent_dim=4)
    d = DCGANDiscriminator(8, 1, width=4)
    trainer = Trainer(g, d, ArrayData(torch.rand(10, 1, 8, 8)), batch_size=4, progress=False, loss="wasserstein", n_critic=3)
    before = [p.clone() for p in g.parameters()]
    trainer.fit(2)
    assert trainer.d_steps == 6
    assert any(not torch.equal(a, b) for a, b in zip(before, g.parameters()))
    samples, labels = trainer.sample_grid(columns=3)
    assert samples.shape == (8, 3, 1, 8, 8) and labels is None


def test_trainer_argument_errors():
    g, d = small_models()
    data = small_data()
    with pytest.raises(ValueError, match="loss must be one of"):
        Trainer(g, d, data, loss="bce")
    with pytest.raises(ValueError, match=r"batch_size 10 must split evenly over 1 process\(es\) x 4"):
        Trainer(g, d, data, batch_size=10, accumulate=4)
    with pytest.raises(ValueError, match="n_critic must be an int >= 1"):
        Trainer(g, d, data, n_critic=0)
    with pytest.raises(ValueError, match=r"ema must be in \[0, 1\)"):
        Trainer(g, d, data, ema=1.5)
    with pytest.raises(ValueError, match="r1 must be a finite number >= 0"):
        Trainer(g, d, data, r1=float("nan"))


def test_trainer_is_exported_lazily():
    import subprocess
    import sys

    assert fastgan.Trainer is Trainer
    code = "import sys, fastgan; print(sorted(m for m in ('fastgan.train', 'fastgan.models', 'fastgan.data', 'sklearn', 'matplotlib', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_amp_trains_in_bfloat16():
    g, d = small_models(norm="none")
    seen = []
    d.head.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    trainer = Trainer(g, d, small_data(), amp=True, r1=1.0, r1_interval=1, batch_size=8, progress=False)
    trainer.fit(2)
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in g.parameters())
    assert all(torch.isfinite(torch.tensor([h["d_loss"], h["g_loss"], h["r1"]])).all() for h in trainer.history)


def test_mixed_dtypes_are_fine_under_autocast_only():
    from fastgan import functional as FG

    x, w = torch.randn(2, 3, 8, 8).bfloat16(), torch.randn(4, 3, 3, 3)
    with pytest.raises(TypeError, match="weight has dtype torch.float32 but x has torch.bfloat16"):
        FG.conv2d_bias_act(x, w)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = FG.conv2d_bias_act(x, w, act="relu")
        z = FG.linear_bias_act(x.flatten(1), torch.randn(5, 192))
    assert y.dtype == torch.bfloat16 and z.dtype == torch.bfloat16
    assert torch.equal(y, FG.conv2d_bias_act(x, w.bfloat16(), act="relu"))
