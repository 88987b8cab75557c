"""Ranking metrics on a hand-computed example (training items filtered out)."""

from math import log2

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fastgan.metrics import ranking_metrics, ranking_metrics_per_user

# 5 users, 6 items.
SCORES = np.array([
    [0.9, 0.1, 0.8, 0.7, 0.6, 0.5],  # u0: train {0}, test {2, 4}
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # u1: train {},  test {4}
    [0.3, 0.3, 0.3, 0.3, 0.3, 0.3],  # u2: train {3}, no test item: not averaged
    [0.5, 0.1, 0.2, 0.3, 0.4, 0.9],  # u3: train {5}, test {0, 1, 2}
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # u4: train {},  test {0}
])
TRAIN = {0: [0], 2: [3], 3: [5]}
TEST = {0: [2, 4], 1: [4], 3: [0, 1, 2], 4: [0]}


def as_matrix(rows):
    m = np.zeros(SCORES.shape)
    for user, items in rows.items():
        m[user, items] = 1
    return m


# Rankings after removing training items:
#   u0: 2, 3, 4, 5, 1   hits at positions 1, 3 of |T| = 2
#   u1: 5, 4, 3, 2, 1, 0   hit at position 2 of |T| = 1
#   u3: 0, 4, 3, 2, 1   hits at positions 1, 4 (and 5) of |T| = 3
#   u4: 5, 4, 3, 2, 1, 0   hit at position 6 of |T| = 1 (outside every top-k here)
# k = 2:
#   u0: P 1/2, R 1/2, DCG 1, IDCG 1 + 1/log2(3), MRR 1
#   u1: P 1/2, R 1,   DCG 1/log2(3), IDCG 1,  MRR 1/2
#   u3: P 1/2, R 1/3, DCG 1, IDCG 1 + 1/log2(3), MRR 1
#   u4: all 0
# k = 4:
#   u0: P 2/4, R 1,   DCG 1 + 1/log2(4), IDCG 1 + 1/log2(3), MRR 1
#   u1: P 1/4, R 1,   DCG 1/log2(3),     IDCG 1,             MRR 1/2
#   u3: P 2/4, R 2/3, DCG 1 + 1/log2(5), IDCG 1 + 1/log2(3) + 1/log2(4), MRR 1
#   u4: all 0
L3 = 1 / log2(3)
EXPECTED = {
    "P@2": (1 / 2 + 1 / 2 + 1 / 2 + 0) / 4,
    "R@2": (1 / 2 + 1 + 1 / 3 + 0) / 4,
    "NDCG@2": (1 / (1 + L3) + L3 / 1 + 1 / (1 + L3) + 0) / 4,
    "MRR@2": (1 + 1 / 2 + 1 + 0) / 4,
    "P@4": (2 / 4 + 1 / 4 + 2 / 4 + 0) / 4,
    "R@4": (1 + 1 + 2 / 3 + 0) / 4,
    "NDCG@4": ((1 + 1 / 2) / (1 + L3) + L3 / 1 + (1 + 1 / log2(5)) / (1 + L3 + 1 / 2) + 0) / 4,
    "MRR@4": (1 + 1 / 2 + 1 + 0) / 4,
}


def test_hand_computed_example():
    got = ranking_metrics(SCORES, as_matrix(TEST), as_matrix(TRAIN), ks=(2, 4))
    assert got.keys() == EXPECTED.keys()
    for name, value in EXPECTED.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_per_user_values_and_skipped_user():
    users, values = ranking_metrics_per_user(torch.tensor(SCORES), sp.csr_matrix(as_matrix(TEST)),
                                             sp.csr_matrix(as_matrix(TRAIN)), ks=2)
    assert users.tolist() == [0, 1, 3, 4]  # u2 has nothing held out
    assert values["MRR@2"].tolist() == [1.0, 0.5, 1.0, 0.0]
    assert values["R@2"].tolist() == pytest.approx([0.5, 1.0, 1 / 3, 0.0])


def test_training_items_are_never_recommended():
    # Without the filter, u0's top item is its training item 0 and u3's its training
    # item 5: both hits are lost.
    filtered = ranking_metrics(SCORES, as_matrix(TEST), as_matrix(TRAIN), ks=1)
    unfiltered = ranking_metrics(SCORES, as_matrix(TEST), None, ks=1)
    assert filtered["P@1"] == pytest.approx(2 / 4)  # u0 (item 2) and u3 (item 0) hit
    assert unfiltered["P@1"] == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="exclude and relevant overlap"):
        ranking_metrics(SCORES, as_matrix(TEST), as_matrix(TEST))
    with pytest.raises(ValueError, match="ks must not exceed the number of items"):
        ranking_metrics(SCORES, as_matrix(TEST), ks=(7,))
    with pytest.raises(ValueError, match="relevant has shape"):
        ranking_metrics(SCORES, np.zeros((2, 6)))
    with pytest.raises(ValueError, match="relevant has no nonzero entry"):
        ranking_metrics(SCORES, np.zeros(SCORES.shape), ks=2)
    with pytest.raises(ValueError, match="ks must be positive ints"):
        ranking_metrics(SCORES, as_matrix(TEST), ks=(0,))
    with pytest.raises(TypeError, match="scores must be a"):
        ranking_metrics([[1.0]], as_matrix(TEST))
