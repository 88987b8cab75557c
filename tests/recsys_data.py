"""A small generated interaction set with known structure, for recommendation tests:
users belong to groups, each group prefers its own block of items."""

import numpy as np
import scipy.sparse as sp


def clustered_interactions(n_users=160, n_items=80, n_groups=4, per_user=12, noise=0.1, seed=0) -> sp.csr_matrix:
    """0/1 [n_users, n_items]: user u of group u % n_groups picks per_user distinct items,
    each from its group's block of n_items / n_groups items with probability 1 - noise,
    else from any item."""
    rng = np.random.default_rng(seed)
    block = n_items // n_groups
    rows, cols = [], []
    for user in range(n_users):
        group = user % n_groups
        chosen = set()
        while len(chosen) < per_user:
            if rng.random() < noise:
                chosen.add(int(rng.integers(n_items)))
            else:
                chosen.add(group * block + int(rng.integers(block)))
        rows += [user] * per_user
        cols += sorted(chosen)
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_users, n_items))
