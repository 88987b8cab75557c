"""CFGAN end to end on a small generated interaction set, its sampling, and the
protocol/command on a tiny CSV."""

import dataclasses
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fastgan.metrics import ranking_metrics
from fastgan.nn import LinearAct
from fastgan.recsys import CFGAN, EASE, CFGANConfig, evaluate_seed, split_per_user
from fastgan.recsys.cfgan import _sample_negatives
from fastgan.cli.eval_recsys import main
from fastgan.recsys.protocol import VALID_SEED_OFFSET
from recsys_data import clustered_interactions

TINY = CFGANConfig(hidden_g=32, hidden_d=16, act="relu", output_act="linear", lr_g=1e-3, lr_d=1e-3,
                   batch_size_g=32, batch_size_d=32, steps_g=1, steps_d=1, epochs=40, eval_every=5, patience=3,
                   zr_weight=0.1, ema=0.9)


def test_negative_samples_never_touch_observed_items():
    observed = (torch.rand(50, 200, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    mask = _sample_negatives(observed, 0.7, torch.Generator().manual_seed(1))
    assert (mask * observed).sum() == 0
    share = mask.sum() / (1 - observed).sum()
    assert abs(float(share) - 0.7) < 0.02
    assert _sample_negatives(observed, 0.0, torch.Generator()).sum() == 0


def test_networks_are_built_from_fused_blocks():
    net = CFGAN(dataclasses.replace(TINY, epochs=1)).fit(clustered_interactions(n_users=20, per_user=5))
    layers = [m for m in net.generator.modules() if isinstance(m, torch.nn.Linear)]
    assert layers and all(isinstance(m, LinearAct) for m in layers)
    assert all(isinstance(m, LinearAct) for m in net.discriminator.modules() if isinstance(m, torch.nn.Linear))
    assert layers[-1].act == TINY.output_act


def test_scores_come_from_the_weight_average_when_ema_is_on():
    data = clustered_interactions(n_users=20, per_user=5)
    plain = CFGAN(dataclasses.replace(TINY, epochs=2, ema=0.0)).fit(data)
    assert plain.scorer is plain.generator
    averaged = CFGAN(dataclasses.replace(TINY, epochs=2, ema=0.5)).fit(data)
    assert averaged.scorer is not averaged.generator
    g = torch.cat([p.flatten() for p in averaged.generator.parameters()])
    a = torch.cat([p.flatten() for p in averaged.scorer.parameters()])
    assert not torch.equal(g, a) and (g - a).abs().max() < 0.5


def test_cfgan_beats_a_random_ranker_by_a_clear_margin():
    data = clustered_interactions(n_users=160, n_items=80, per_user=12, seed=0)
    train, test = split_per_user(data, 0.2, seed=0)
    fit, valid = split_per_user(train, 0.2, seed=1)
    early = CFGAN(TINY, seed=0).fit(fit, valid)
    assert 5 <= early.log.best_epoch <= TINY.epochs and early.log.history
    model = CFGAN(early.refit_config(), seed=0).fit(train)
    gan = ranking_metrics(model.score(train), test, train, ks=(10,))["NDCG@10"]
    random_scores = np.random.default_rng(0).random(data.shape)
    chance = ranking_metrics(random_scores, test, train, ks=(10,))["NDCG@10"]
    # Each user's test items sit in a block of 20 of the ~70 unseen items: chance is
    # about .1, a model that has found the blocks gets several times that.
    assert chance < 0.2
    print(f"NDCG@10 CFGAN {gan:.3f}, random {chance:.3f}")
    assert gan > chance + 0.25, (gan, chance)


def test_demographics_enter_both_networks():
    data = clustered_interactions(n_users=40, n_items=40, per_user=6)
    features = np.eye(4, dtype=np.float32)[np.arange(40) % 4]
    config = CFGANConfig(hidden_g=8, hidden_d=8, epochs=1)
    model = CFGAN(config, user_features=features).fit(data)
    assert model.generator.net[0].in_features == 40 + 4
    assert model.discriminator.net[0].in_features == 2 * 40 + 4
    assert model.score(data).shape == (40, 40)
    with pytest.raises(ValueError, match="user_features has 40 rows but history has 3 users"):
        model.score(data[:3])


def test_protocol_and_command_on_a_tiny_csv(tmp_path, capsys):
    data = clustered_interactions(n_users=60, n_items=30, per_user=8, seed=2)
    users, items = data.nonzero()
    path = tmp_path / "ratings.csv"
    path.write_text("user,item\n" + "".join(f"u{u},i{i}\n" for u, i in zip(users, items)))
    out = tmp_path / "result.json"
    assert main(["--data", str(path), "--seeds", "0", "1", "--epochs", "4", "--cfgan", "beta1=0.8", "hidden_g=24",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("CFGAN", "EASE", "TopPop", "NDCG@20", "MRR@5", "±"):
        assert name in printed
    record = json.loads(out.read_text())
    assert record["seeds"] == [0, 1] and set(record["summary"]) == {"CFGAN", "EASE", "TopPop"}
    assert 0 < record["summary"]["EASE"]["NDCG@20"]["mean"] <= 1
    assert record["cfgan_config"]["beta1"] == 0.8 and record["cfgan_config"]["hidden_g"] == 24
    assert record["cfgan_config"]["epochs"] == 4 and "--cfgan beta1=0.8 hidden_g=24" in record["command"]
    assert main(["--data", str(path), "--cfgan", "beta_one=0.8"]) == 2
    assert "argument --cfgan: expected name=value with name among" in capsys.readouterr().err
    assert main(["--data", str(path), "--cfgan", "beta1=1.5"]) == 2
    assert "beta1 must be in [0, 1)" in capsys.readouterr().err
    assert main(["--data", str(path), "--choose-demographics"]) == 2
    assert "argument --choose-demographics: needs --demographics" in capsys.readouterr().err


def test_evaluate_seed_chooses_on_validation_only():
    data, grid = clustered_interactions(), (0.1, 10.0, 1e4)
    ease = evaluate_seed(data, 0, models=("EASE",), ease_l2_grid=grid)["EASE"]
    # The choice is the argmax of NDCG@20 on the validation split carved from training,
    # recomputed here; the test split plays no part in it.
    train, _ = split_per_user(data, 0.2, seed=0)
    fit, valid = split_per_user(train, 0.2, seed=0 + VALID_SEED_OFFSET)
    by_l2 = {l2: ranking_metrics(EASE(l2).fit(fit).score(fit), valid, fit, ks=(20,))["NDCG@20"] for l2 in grid}
    assert ease.chosen["l2"] == max(by_l2, key=by_l2.get)
    assert ease.valid == pytest.approx(max(by_l2.values()))
    with pytest.raises(ValueError, match="models must be among"):
        evaluate_seed(clustered_interactions(), 0, models=("BPR",))


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="pm_ratio must be in"):
        CFGANConfig(pm_ratio=1.5)
    with pytest.raises(ValueError, match="hidden_g must be a positive int"):
        CFGANConfig(hidden_g=0)
    with pytest.raises(TypeError, match="train must be a scipy.sparse"):
        CFGAN(TINY).fit(np.zeros((3, 3)))
    with pytest.raises(RuntimeError, match="before fit"):
        CFGAN(TINY).score(sp.csr_matrix((2, 2)))


def _generator_weights(model):
    return torch.cat([p.detach().flatten() for p in model.generator.parameters()])


def test_lr_decay_shrinks_the_steps_of_later_epochs():
    data = clustered_interactions(n_users=40, n_items=40, per_user=6)
    one = CFGAN(dataclasses.replace(TINY, epochs=1, lr_decay=1e-6), seed=3).fit(data)
    # After the first epoch the rates are 1e-9: three epochs end where one did.
    three = CFGAN(dataclasses.replace(TINY, epochs=3, lr_decay=1e-6), seed=3).fit(data)
    assert (_generator_weights(three) - _generator_weights(one)).abs().max() < 1e-5
    undecayed = CFGAN(dataclasses.replace(TINY, epochs=3), seed=3).fit(data)
    assert (_generator_weights(undecayed) - _generator_weights(one)).abs().max() > 1e-3


def test_beta1_reaches_adam():
    data = clustered_interactions(n_users=40, n_items=40, per_user=6)
    a = CFGAN(dataclasses.replace(TINY, epochs=2, beta1=0.9), seed=3).fit(data)
    b = CFGAN(dataclasses.replace(TINY, epochs=2, beta1=0.0), seed=3).fit(data)
    assert (_generator_weights(a) - _generator_weights(b)).abs().max() > 1e-4


def test_ease_base_starts_the_generator_at_ease_and_trains_a_correction():
    data = clustered_interactions(n_users=60, n_items=40, per_user=6)
    frozen = CFGAN(dataclasses.replace(TINY, epochs=1, lr_g=0.0, ema=0.0, ease_base_l2=50.0)).fit(data)
    np.testing.assert_allclose(frozen.score(data), EASE(50.0).fit(data).score(data), atol=1e-4)
    trained = CFGAN(dataclasses.replace(TINY, epochs=2, ema=0.0, ease_base_l2=50.0)).fit(data)
    correction = trained.score(data) - EASE(50.0).fit(data).score(data)
    assert np.abs(correction).max() > 1e-3
    with pytest.raises(ValueError, match="ease_base_l2 must be a finite number"):
        CFGANConfig(ease_base_l2=-1.0)
    with pytest.raises(ValueError, match="lr_decay must be in"):
        CFGANConfig(lr_decay=0.0)


def test_tuning_runner_scores_the_validation_carved_from_the_tuning_split(tmp_path):
    from fastgan.recsys.tune import TUNING_VALID_OFFSET, main as tune_main, tune

    data = clustered_interactions(n_users=60, n_items=30, per_user=8, seed=4)
    users, items = data.nonzero()
    path = tmp_path / "likes.csv"
    path.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in zip(users, items)))
    config = dataclasses.replace(TINY, epochs=10)
    (row,) = tune(config, [1], data=str(path))
    train, _ = split_per_user(data, 0.2, seed=1)
    fit, valid = split_per_user(train, 0.2, seed=1 + TUNING_VALID_OFFSET)
    direct = CFGAN(config, seed=1).fit(fit, valid)
    assert row["valid"] == pytest.approx(direct.log.best_score) and row["epoch"] == direct.log.best_epoch
    with pytest.raises(SystemExit):
        tune_main(["--set", "beta_one=0.5"])


def test_nested_tuning_replays_the_protocol_inside_the_fit_part(tmp_path):
    from fastgan.recsys.tune import NESTED_VALID_OFFSET, TUNING_VALID_OFFSET, nested, score_at

    data = clustered_interactions(n_users=60, n_items=30, per_user=8, seed=4)
    users, items = data.nonzero()
    path = tmp_path / "likes.csv"
    path.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in zip(users, items)))
    config = dataclasses.replace(TINY, epochs=10, eval_every=1)
    (row,) = nested(config, [1], scale_max=1.5, data=str(path))
    train, _ = split_per_user(data, 0.2, seed=1)
    fit, valid = split_per_user(train, 0.2, seed=1 + TUNING_VALID_OFFSET)
    inner_fit, inner_valid = split_per_user(fit, 0.2, seed=1 + NESTED_VALID_OFFSET)
    early = CFGAN(config, seed=1).fit(inner_fit, inner_valid)
    assert row["epoch"] == early.log.best_epoch and row["inner_valid"] == pytest.approx(early.log.best_score)
    # The curve is the retraining on the whole fit part, scored on the outer validation
    # split, running past the chosen count; at the chosen count it is the model the
    # protocol would retrain.
    epochs = [e for e, _ in row["curve"]]
    assert epochs == list(range(1, int(np.ceil(1.5 * early.log.best_epoch)) + 1))
    retrained = CFGAN(early.refit_config(), seed=1).fit(fit)
    at_chosen = ranking_metrics(retrained.score(fit), valid, fit, ks=(20,))["NDCG@20"]
    assert score_at(row["curve"], early.log.best_epoch) == pytest.approx(at_chosen)
    assert score_at([(2, 0.1), (4, 0.2)], 3) == 0.1 and score_at([(2, 0.1), (4, 0.2)], 5) == 0.2


def test_protocol_chooses_user_features_on_validation():
    data = clustered_interactions(n_users=60, n_items=30, per_user=8, seed=3)
    config = dataclasses.replace(TINY, epochs=6, eval_every=2)
    train, test = split_per_user(data, 0.2, seed=0)
    fit, valid = split_per_user(train, 0.2, seed=0 + VALID_SEED_OFFSET)
    plain = CFGAN(config, seed=0).fit(fit, valid)
    # Two feature sets: the users' cluster (what clustered_interactions draws from) and
    # noise; for each, the protocol must keep whichever of the two early-stopping runs
    # scores higher on validation, and test exactly that model retrained.
    clusters = np.eye(4, dtype=np.float32)[np.arange(60) % 4]
    noise = np.random.default_rng(2).normal(size=(60, 4)).astype(np.float32) * 30
    seen = set()
    for features in (clusters, noise):
        with_features = CFGAN(config, user_features=features, seed=0).fit(fit, valid)
        result = evaluate_seed(data, 0, models=("CFGAN",), cfgan_config=config, user_features=features,
                               choose_features=True)["CFGAN"]
        keep = with_features.log.best_score >= plain.log.best_score
        early = with_features if keep else plain
        assert result.chosen == {"epochs": early.log.best_epoch, "features": keep}
        assert result.valid == pytest.approx(early.log.best_score)
        final = CFGAN(early.refit_config(), user_features=features if keep else None, seed=0).fit(train)
        expected = ranking_metrics(final.score(train), test, train, ks=(5, 20))["NDCG@20"]
        assert result.test["NDCG@20"] == pytest.approx(expected)
        seen.add(keep)
    assert seen == {True, False}, "both branches of the choice should be exercised"
    with pytest.raises(ValueError, match="choose_features needs user_features"):
        evaluate_seed(data, 0, models=("CFGAN",), choose_features=True)
