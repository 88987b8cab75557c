"""Random per-user hold-out split: each user's positives are shuffled and a fraction is
held out (test, or validation when applied again to the training part)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def split_per_user(matrix: sp.spmatrix, fraction: float = 0.2, *, seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(kept, held_out): disjoint 0/1 CSR matrices whose sum is `matrix`.

    A user with n >= 2 positives has round(fraction * n) of them held out, at least 1 and
    at most n - 1, so every such user keeps a history and has something to predict; a
    user with a single positive keeps it.
    """
    if not sp.issparse(matrix):
        raise TypeError(f"matrix must be a scipy.sparse matrix, got {type(matrix).__name__}")
    if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sum_duplicates()
    rng = np.random.default_rng(seed)
    kept_rows, kept_cols, held_rows, held_cols = [], [], [], []
    for user in range(matrix.shape[0]):
        items = matrix.indices[matrix.indptr[user]:matrix.indptr[user + 1]]
        n = len(items)
        n_held = 0 if n < 2 else min(max(int(round(fraction * n)), 1), n - 1)
        items = rng.permutation(items)
        held_rows.append(np.full(n_held, user))
        held_cols.append(items[:n_held])
        kept_rows.append(np.full(n - n_held, user))
        kept_cols.append(items[n_held:])
    return _binary(kept_rows, kept_cols, matrix.shape), _binary(held_rows, held_cols, matrix.shape)


def _binary(rows, cols, shape) -> sp.csr_matrix:
    rows, cols = np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
