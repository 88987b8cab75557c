"""Scoring samplers over seeds (what `fastgan eval` runs on a checkpoint's generator)."""

import math

import pytest
import torch

from digits_data import digits_and_classifier
from fastgan import metrics as M


@pytest.fixture(scope="module")
def digits():
    return digits_and_classifier()


def test_a_sampler_of_real_digits_scores_high_on_every_class(digits):
    classifier, x_train, y_train, x_test, y_test = digits

    def real_sampler(conditions):
        # A "generator" that returns unseen real digits of the asked class.
        out = torch.empty(len(conditions), 1, 8, 8)
        for c in conditions.unique():
            pool = x_train[y_train == c]
            idx = torch.randint(len(pool), (int((conditions == c).sum()),))
            out[conditions == c] = pool[idx]
        return out

    result = M.evaluate_conditional(real_sampler, classifier, x_test, y_test, seeds=(0, 1))
    overall = result["overall"]
    assert overall["accuracy"][0] > 0.93 and overall["recall"][0] > 0.75 and overall["coverage"][0] > 0.75
    assert set(result["per_class"]) == set(range(10))
    assert all(row["accuracy"][0] > 0.8 for row in result["per_class"].values())
    assert overall["accuracy"][1] < 0.05  # std over the two seeds


def test_a_sampler_that_ignores_its_condition_has_chance_accuracy(digits):
    classifier, x_train, _, x_test, y_test = digits

    def ignores_condition(conditions):
        return x_train[torch.randint(len(x_train), (len(conditions),))]

    overall = M.evaluate_conditional(ignores_condition, classifier, x_test, y_test, seeds=(0,))["overall"]
    assert overall["accuracy"][0] < 0.25
    assert overall["recall"][0] > 0.6  # the samples are still real-looking digits


def test_mode_sampler_over_seeds():
    modes = M.ring_modes()

    def perfect_ring(n):
        return modes[torch.randint(8, (n,))] + M.RING_SIGMA * torch.randn(n, 2, dtype=torch.float64)

    summary = M.evaluate_modes(perfect_ring, "ring", seeds=(0, 1, 2))
    assert summary["modes"] == (8.0, 0.0)
    assert summary["high_quality"][0] == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    collapsed = M.evaluate_modes(lambda n: modes[:1].expand(n, 2), "ring", seeds=(0,))
    assert collapsed["modes"] == (1.0, 0.0) and collapsed["reverse_kl"][0] == pytest.approx(math.log(8))
    assert M.format_summary(collapsed, name="collapsed").startswith("| collapsed | 1.0000 ± 0.0000 |")


def test_bad_input():
    with pytest.raises(ValueError, match="kind must be 'ring' or 'grid'"):
        M.evaluate_modes(lambda n: torch.zeros(n, 2), "spiral")
    with pytest.raises(ValueError, match="seeds must be a non-empty sequence"):
        M.evaluate_modes(lambda n: torch.zeros(n, 2), "ring", seeds=())


def test_conditional_mode_sampler_scores_whether_each_point_lands_on_its_own_mode():
    modes = M.grid_modes()

    def on_own_mode(conditions):
        return modes[conditions] + M.GRID_SIGMA * torch.randn(len(conditions), 2, dtype=torch.float64)

    result = M.evaluate_modes_conditional(on_own_mode, "grid", seeds=(0, 1))
    overall = result["overall"]
    assert overall["modes"] == (25.0, 0.0)
    assert overall["accuracy"][0] == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    assert overall["reverse_kl"][0] < 0.01  # 100 conditions per mode: balanced by construction
    assert set(result["per_class"]) == set(range(25))
    assert all(row["accuracy"][0] > 0.93 for row in result["per_class"].values())

    def shifted(conditions):  # perfect points, on the wrong mode
        return on_own_mode((conditions + 1) % 25)

    wrong = M.evaluate_modes_conditional(shifted, "grid", seeds=(0,))
    assert wrong["overall"]["modes"][0] == 25 and wrong["overall"]["high_quality"][0] > 0.97
    assert wrong["overall"]["accuracy"][0] == 0.0
    assert all(row["high_quality"][0] > 0.9 and row["accuracy"][0] == 0 for row in wrong["per_class"].values())

    def even_only(conditions):  # odd conditions land far from every mode
        return torch.where((conditions % 2 == 0)[:, None], on_own_mode(conditions), torch.tensor(9.0, dtype=torch.float64))

    half = M.evaluate_modes_conditional(even_only, "grid", seeds=(0,), n=500)
    assert half["overall"]["modes"][0] == 13  # the even modes only
    assert half["per_class"][1]["high_quality"] == (0.0, 0.0)
    with pytest.raises(ValueError, match="expected a tensor with 500 samples"):
        M.evaluate_modes_conditional(lambda c: on_own_mode(c)[:10], "grid", seeds=(0,), n=500)
    with pytest.raises(ValueError, match="n must be a positive int"):
        M.evaluate_modes_conditional(on_own_mode, "grid", n=0)
