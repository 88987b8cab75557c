"""Top-k ranking metrics for recommendation, with each user's training items filtered out.

For a user u with relevant (held-out) items T_u and top-k list L_u (ranked by score
after removing u's training items), with hit_j = 1 if the j-th item of L_u is in T_u:
  P@k    = sum_j hit_j / k
  R@k    = sum_j hit_j / |T_u|
  NDCG@k = sum_j hit_j / log2(j + 1)  /  sum_{j <= min(k, |T_u|)} 1 / log2(j + 1)
  MRR@k  = 1 / (position of the first hit), 0 when no hit in the top k
(j counted from 1.) Each is averaged over the users with at least one relevant item,
the definitions of the CFGAN paper's evaluation.
"""

from __future__ import annotations

import numpy as np
import torch

METRICS = ("P", "R", "NDCG", "MRR")


def _matrix(name: str, x, *, boolean: bool) -> torch.Tensor:
    if hasattr(x, "toarray"):  # scipy.sparse
        x = x.toarray()
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a [users, items] tensor, numpy array or scipy.sparse matrix, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [users, items], got shape {tuple(x.shape)}")
    x = x.detach().cpu()
    if boolean:
        return x != 0
    if not x.dtype.is_floating_point:
        x = x.double()
    if torch.isnan(x).any():
        raise ValueError(f"{name} holds NaN")
    return x.clone()


def _ks(ks, n_items: int) -> tuple[int, ...]:
    if isinstance(ks, int):
        ks = (ks,)
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive ints, got {ks!r}")
    if max(ks) > n_items:
        raise ValueError(f"ks must not exceed the number of items ({n_items}), got {ks!r}")
    return ks


def ranking_metrics_per_user(scores, relevant, exclude=None, ks=(5, 20)) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(users, values): the indices of the users that have a relevant item, and for each
    metric name ("P@5", "NDCG@20", ...) a float64 tensor of one value per such user.

    scores [U, I]: higher is better. relevant [U, I]: nonzero where the item is a
    held-out positive. exclude [U, I]: nonzero where the item must never be recommended
    (the user's training items); it may not overlap `relevant`.
    """
    scores = _matrix("scores", scores, boolean=False)
    relevant = _matrix("relevant", relevant, boolean=True)
    if relevant.shape != scores.shape:
        raise ValueError(f"relevant has shape {tuple(relevant.shape)} but scores has {tuple(scores.shape)}")
    if exclude is not None:
        exclude = _matrix("exclude", exclude, boolean=True)
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude has shape {tuple(exclude.shape)} but scores has {tuple(scores.shape)}")
        if (exclude & relevant).any():
            raise ValueError("exclude and relevant overlap: a held-out item is also a training item")
        scores[exclude] = -torch.inf
    ks = _ks(ks, scores.shape[1])
    n_relevant = relevant.sum(1)
    users = torch.nonzero(n_relevant > 0).flatten()
    if users.numel() == 0:
        raise ValueError("relevant has no nonzero entry: there is nothing to rank against")
    scores, relevant, n_relevant = scores[users], relevant[users], n_relevant[users].double()

    kmax = max(ks)
    top = scores.topk(kmax, dim=1).indices
    hits = relevant.gather(1, top).double()
    position = torch.arange(1, kmax + 1, dtype=torch.float64)
    discount = 1.0 / torch.log2(position + 1)
    ideal = discount.cumsum(0)
    values = {}
    for k in ks:
        h = hits[:, :k]
        found = h.sum(1)
        values[f"P@{k}"] = found / k
        values[f"R@{k}"] = found / n_relevant
        best = ideal[(n_relevant.clamp(max=k) - 1).long()]
        values[f"NDCG@{k}"] = (h * discount[:k]).sum(1) / best
        # The first hit has the largest 1/position among the hits.
        values[f"MRR@{k}"] = (h / position[:k]).max(1).values
    return users, values


def ranking_metrics(scores, relevant, exclude=None, ks=(5, 20)) -> dict[str, float]:
    """Each metric of ranking_metrics_per_user averaged over the users with a relevant item."""
    _, values = ranking_metrics_per_user(scores, relevant, exclude, ks)
    return {name: float(v.mean()) for name, v in values.items()}
