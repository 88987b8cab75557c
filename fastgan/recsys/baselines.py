"""Non-GAN recommenders evaluated beside CFGAN: TopPop and EASE.

Each has fit(train) -> self and score(history) -> [users, items] scores, where train
and history are 0/1 [users, items] scipy.sparse matrices (history is what each user
is known to have consumed; for the evaluation, the training matrix itself).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _binary_matrix(name: str, x) -> sp.csr_matrix:
    if not sp.issparse(x):
        raise TypeError(f"{name} must be a scipy.sparse [users, items] matrix, got {type(x).__name__}")
    return sp.csr_matrix(x, dtype=np.float64)


class TopPop:
    """Recommend the items with the most training positives, the same list to everyone."""

    def fit(self, train) -> "TopPop":
        train = _binary_matrix("train", train)
        self.popularity = np.asarray((train != 0).sum(0), dtype=np.float64).ravel()
        return self

    def score(self, history) -> np.ndarray:
        history = _binary_matrix("history", history)
        if history.shape[1] != self.popularity.shape[0]:
            raise ValueError(f"history has {history.shape[1]} items but the model was fit on {self.popularity.shape[0]}")
        return np.broadcast_to(self.popularity, history.shape).copy()


class EASE:
    """Embarrassingly Shallow Autoencoder (Steck, WWW 2019): the item-item weights B that
    minimise ||X - X B||^2 + l2 ||B||^2 with diag(B) = 0, in closed form:
        P = (X^T X + l2 I)^-1,   B = -P / diag(P) (column-wise),   diag(B) = 0.
    """

    def __init__(self, l2: float = 500.0):
        if not (isinstance(l2, (int, float)) and l2 > 0):
            raise ValueError(f"l2 must be a positive number, got {l2!r}")
        self.l2 = float(l2)

    def fit(self, train) -> "EASE":
        train = _binary_matrix("train", train)
        gram = (train.T @ train).toarray()
        gram[np.diag_indices_from(gram)] += self.l2
        precision = np.linalg.inv(gram)
        self.weights = -precision / np.diag(precision)[None, :]
        self.weights[np.diag_indices_from(self.weights)] = 0.0
        return self

    def score(self, history) -> np.ndarray:
        history = _binary_matrix("history", history)
        if history.shape[1] != self.weights.shape[0]:
            raise ValueError(f"history has {history.shape[1]} items but the model was fit on {self.weights.shape[0]}")
        return np.asarray(history @ self.weights)
