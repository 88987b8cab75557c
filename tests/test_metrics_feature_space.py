"""Feature-space scores: closed forms, hand-checked small cases, and the digits
classifier scoring held-out real digits near perfect and a collapsed set with recall 0."""

import math

import numpy as np
import pytest
import torch

from digits_data import digits_and_classifier
from fastgan import metrics as M


def gaussian(n, d, mean=0.0, std=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * std + mean


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    # On the sample moments, FD must equal the formula computed through scipy's sqrtm of
    # S_r S_f (an independent route); and it estimates the population value, which for
    # N(m1, a I) and N(m2, b I) in d dimensions is ||m1 - m2||^2 + d (sqrt(a) - sqrt(b))^2.
    real, fake = gaussian(4000, 3, 0.0, 1.0, 1), gaussian(4000, 3, 0.5, 2.0, 2)
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = torch.cov(real.T), torch.cov(fake.T)
    import scipy.linalg

    cross = scipy.linalg.sqrtm(cov_r.numpy() @ cov_f.numpy()).real.trace()
    expected = float((mu_r - mu_f).square().sum() + cov_r.trace() + cov_f.trace() - 2 * cross)
    assert M.frechet_distance(real, fake) == pytest.approx(expected, rel=1e-9)
    # And the population value it estimates: 3 * 0.5^2 + 3 * (1 - 2)^2 = 3.75.
    assert M.frechet_distance(real, fake) == pytest.approx(3.75, abs=0.25)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_symmetric():
    a, b = gaussian(500, 8, seed=3), gaussian(500, 8, 1.0, 0.5, seed=4)
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert M.frechet_distance(a, b) == pytest.approx(M.frechet_distance(b, a), rel=1e-8)
    assert M.frechet_distance(a, b) > 8 * 1.0 ** 2  # the mean shift alone contributes 8


def test_precision_recall_density_coverage_by_hand_in_one_dimension():
    # real = {0, 1, 2, 3}, k = 1: each real point's radius (distance to its nearest other
    # real point) is 1. fake = {0.5, 10}: 0.5 lies in the balls of 0 and 1 (2 balls),
    # 10 in none. precision = 1/2.
    # fake radii with k=1: |10 - 0.5| = 9.5 for both; reals within 9.5 of 0.5 or 10:
    # all four -> recall = 1.
    # density = (2 + 0) / (k * 2) = 1; coverage = balls holding a fake: those of 0 and 1 -> 2/4.
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0]])
    precision, recall = M.precision_recall(real, fake, k=1)
    density, coverage = M.density_coverage(real, fake, k=1)
    assert (precision, recall) == (0.5, 1.0)
    assert (density, coverage) == (1.0, 0.5)


def test_identical_distributions_score_high_and_shifted_ones_low():
    real, same, far = gaussian(600, 4, seed=5), gaussian(600, 4, seed=6), gaussian(600, 4, 6.0, seed=7)
    p, r = M.precision_recall(real, same)
    d, c = M.density_coverage(real, same)
    assert p > 0.85 and r > 0.85 and c > 0.85 and 0.8 < d < 1.2
    p, r = M.precision_recall(real, far)
    d, c = M.density_coverage(real, far)
    assert p < 0.05 and r < 0.05 and c < 0.05 and d < 0.05


def test_conditional_accuracy():
    assert M.conditional_accuracy(torch.tensor([1, 2, 3, 3]), torch.tensor([1, 2, 0, 3])) == 0.75
    assert M.conditional_accuracy(np.array([0, 0]), np.array([1, 1])) == 0.0


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="fake must have 3 features"):
        M.frechet_distance(torch.zeros(5, 3), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="real must be 2-D"):
        M.precision_recall(torch.zeros(5), torch.zeros(5, 1))
    with pytest.raises(ValueError, match="k=5 needs more than 5 points"):
        M.density_coverage(torch.randn(5, 2), torch.randn(9, 2), k=5)
    with pytest.raises(ValueError, match="fake holds NaN"):
        M.precision_recall(torch.randn(5, 2), torch.full((5, 2), math.nan))
    with pytest.raises(TypeError, match="conditions must hold integer class indices"):
        M.conditional_accuracy(torch.tensor([1, 2]), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="conditions must be 1-D with 2 entries"):
        M.conditional_accuracy(torch.tensor([1, 2]), torch.tensor([1, 2, 3]))


@pytest.fixture(scope="module")
def digits():
    return digits_and_classifier()


def test_held_out_real_digits_score_near_perfect(digits):
    classifier, x_train, _, x_test, y_test = digits
    # Equal set sizes: coverage and recall depend on the ratio of the two sizes.
    scores = M.score_samples(classifier, x_train[:360], x_test, y_test)
    assert scores["accuracy"] > 0.93
    assert scores["precision"] > 0.85 and scores["recall"] > 0.85
    assert scores["coverage"] > 0.85 and 0.8 < scores["density"] < 1.2


def test_collapsed_digits_keep_accuracy_but_lose_recall_and_coverage(digits):
    classifier, x_train, _, x_test, y_test = digits
    # One real image per class, repeated: every sample is a perfect digit of its class.
    # Its 10 distinct points can still sit inside a few real balls each (coverage about
    # .14 here), against > .85 for honest samples.
    one_per_class = torch.cat([x_test[y_test == c][:1].expand(36, -1, -1, -1) for c in range(10)])
    conditions = torch.arange(10).repeat_interleave(36)
    collapsed = M.score_samples(classifier, x_train[:360], one_per_class, conditions)
    honest = M.score_samples(classifier, x_train[:360], x_test, y_test)
    assert collapsed["accuracy"] > 0.9  # accuracy alone cannot see the collapse...
    assert collapsed["recall"] < 0.05 and collapsed["coverage"] < 0.25  # ...recall and coverage do
    assert collapsed["fd"] > 3 * honest["fd"]


def test_noise_scores_zero_precision(digits):
    classifier, x_train, _, _, _ = digits
    noise = torch.rand(360, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    scores = M.score_samples(classifier, x_train[:360], noise, torch.arange(360) % 10)
    assert scores["precision"] < 0.05 and scores["coverage"] < 0.05 and scores["accuracy"] < 0.3
