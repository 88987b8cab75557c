"""TopPop and EASE on tiny examples whose right answer is known."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastgan.metrics import ranking_metrics
from fastgan.recsys import EASE, TopPop, split_per_user
from recsys_data import clustered_interactions

# Items 0 and 1 are always consumed together, and so are 2 and 3; item 4 by everyone.
PAIRS = sp.csr_matrix(np.array([
    [1, 1, 0, 0, 1],
    [1, 1, 0, 0, 1],
    [1, 1, 0, 0, 1],
    [0, 0, 1, 1, 1],
    [0, 0, 1, 1, 1],
], dtype=np.float32))


def test_toppop_recommends_the_most_consumed_unseen_items():
    model = TopPop().fit(PAIRS)
    np.testing.assert_array_equal(model.popularity, [3, 3, 2, 2, 5])
    history = sp.csr_matrix(np.array([[0, 0, 0, 0, 1]], dtype=np.float32))
    scores = model.score(history)
    scores[history.toarray() > 0] = -np.inf
    assert set(np.argsort(-scores[0])[:2]) == {0, 1}  # 3 users each, ahead of items 2, 3


def test_ease_recommends_the_partner_item():
    model = EASE(l2=1.0).fit(PAIRS)
    assert np.all(np.diag(model.weights) == 0)
    for seen, partner in ((0, 1), (1, 0), (2, 3), (3, 2)):
        history = np.zeros((1, 5), dtype=np.float32)
        history[0, seen] = 1
        scores = model.score(sp.csr_matrix(history))[0]
        scores[seen] = -np.inf
        assert np.argmax(scores) == partner


def test_ease_weights_are_the_constrained_ridge_solution():
    # Column j of B regresses item j on every other item with an l2 penalty:
    # B[-j, j] = (X_-j^T X_-j + l2 I)^-1 X_-j^T x_j, solved here one column at a time.
    x = clustered_interactions(n_users=40, n_items=12, n_groups=3, per_user=4, seed=1)
    l2 = 3.0
    model = EASE(l2).fit(x)
    dense = x.toarray().astype(np.float64)
    for j in range(dense.shape[1]):
        others = np.delete(np.arange(dense.shape[1]), j)
        xo = dense[:, others]
        expected = np.linalg.solve(xo.T @ xo + l2 * np.eye(len(others)), xo.T @ dense[:, j])
        np.testing.assert_allclose(model.weights[others, j], expected, rtol=1e-8, atol=1e-10)


def test_ease_beats_toppop_on_clustered_users():
    train, test = split_per_user(clustered_interactions(), 0.2, seed=0)
    ease = ranking_metrics(EASE(10.0).fit(train).score(train), test, train, ks=(10,))["NDCG@10"]
    pop = ranking_metrics(TopPop().fit(train).score(train), test, train, ks=(10,))["NDCG@10"]
    assert ease > pop + 0.2


def test_bad_input():
    with pytest.raises(ValueError, match="l2 must be a positive number"):
        EASE(0)
    with pytest.raises(TypeError, match="train must be a scipy.sparse"):
        EASE().fit(PAIRS.toarray())
    with pytest.raises(ValueError, match="history has 3 items but the model was fit on 5"):
        TopPop().fit(PAIRS).score(sp.csr_matrix((1, 3)))
