"""Interaction data for recommendation: MovieLens-100K from the installed recbole
package, a MovieLens u.data / recbole .inter file, or any user,item[,rating] CSV.

Everything becomes implicit feedback: a (user, item) pair that appears is a positive,
whatever its rating (the CFGAN protocol on MovieLens), unless min_rating keeps only
ratings at or above a threshold. Repeated pairs count once.

MovieLens' licence forbids redistributing the data: it is read from the recbole
package where it is installed (`pip install --no-deps recbole==1.2.1`), never copied.
"""

from __future__ import annotations

import csv
import importlib.util
import pathlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

MOVIELENS_100K = "ml-100k"
_RECBOLE_HINT = "install it with `pip install --no-deps recbole==1.2.1` (MovieLens-100K ships inside it)"


def movielens_100k_dir() -> pathlib.Path:
    """The folder of MovieLens-100K inside the installed recbole package."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"MovieLens-100K is read from the recbole package, which is not installed: {_RECBOLE_HINT}")
    folder = pathlib.Path(spec.origin).parent / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise FileNotFoundError(f"{folder / 'ml-100k.inter'} is missing from the installed recbole: {_RECBOLE_HINT}")
    return folder


@dataclass(frozen=True)
class Interactions:
    """Positive (user, item) pairs as dense indices 0..n-1, with the original ids."""

    users: np.ndarray  # int64 [n_pairs]
    items: np.ndarray  # int64 [n_pairs]
    user_ids: tuple[str, ...]  # user_ids[u] is the id user index u had in the file
    item_ids: tuple[str, ...]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def matrix(self) -> sp.csr_matrix:
        """[n_users, n_items] float32 CSR with 1 at every positive pair."""
        m = sp.csr_matrix(
            (np.ones(len(self.users), dtype=np.float32), (self.users, self.items)), shape=(self.n_users, self.n_items)
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m


def load_interactions(source: str | pathlib.Path = MOVIELENS_100K, *, min_rating: float | None = None,
                      header: bool | None = None) -> Interactions:
    """Read positives from `source`: "ml-100k", or a path to a .inter, u.data or CSV file.

    A file's first three columns are user, item and (optionally) rating; others (a
    timestamp) are ignored. Columns are split on tabs if the first line has one, else on
    commas. header=None detects a header line: recbole's typed names (user_id:token) or
    a first field that starts with "user".
    """
    if str(source) == MOVIELENS_100K:
        path = movielens_100k_dir() / "ml-100k.inter"
    else:
        path = pathlib.Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"source: no such file {str(path)!r} (give a path or {MOVIELENS_100K!r})")
    if min_rating is not None and not isinstance(min_rating, (int, float)):
        raise TypeError(f"min_rating must be a number or None, got {min_rating!r}")
    rows = _read_rows(path, header)
    users, items, ratings = [], [], []
    for line_no, row in rows:
        if len(row) < 2:
            raise ValueError(f"{path}:{line_no}: expected user and item columns, got {row!r}")
        users.append(row[0].strip())
        items.append(row[1].strip())
        if min_rating is not None:
            if len(row) < 3:
                raise ValueError(f"{path}:{line_no}: min_rating needs a rating column, got {row!r}")
            try:
                ratings.append(float(row[2]))
            except ValueError:
                raise ValueError(f"{path}:{line_no}: rating {row[2]!r} is not a number") from None
    if not users:
        raise ValueError(f"{path} holds no interactions")
    if min_rating is not None:
        keep = np.asarray(ratings) >= min_rating
        users = [u for u, k in zip(users, keep) if k]
        items = [i for i, k in zip(items, keep) if k]
        if not users:
            raise ValueError(f"no rating in {path} is >= min_rating={min_rating}")
    user_ids, user_index = _index(users)
    item_ids, item_index = _index(items)
    return Interactions(user_index, item_index, user_ids, item_ids)


def _read_rows(path: pathlib.Path, header: bool | None):
    with open(path, newline="", encoding="utf-8") as f:
        first = f.readline()
        delimiter = "\t" if "\t" in first else ","
        f.seek(0)
        reader = csv.reader(f, delimiter=delimiter)
        rows = [(n, row) for n, row in enumerate(reader, start=1) if row and any(field.strip() for field in row)]
    if rows and (header if header is not None else _looks_like_header(rows[0][1])):
        rows = rows[1:]
    return rows


def _looks_like_header(row) -> bool:
    return any(":" in field for field in row) or row[0].strip().lower().startswith("user")


def _index(labels: list[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Dense indices of the ids, in sorted order (integer ids numerically, then the
    others alphabetically), so index u is the same whatever the file's line order."""
    unique = sorted(set(labels), key=lambda s: (0, int(s), "") if s.lstrip("-").isdigit() else (1, 0, s))
    position = {label: n for n, label in enumerate(unique)}
    return tuple(unique), np.fromiter((position[s] for s in labels), dtype=np.int64, count=len(labels))


# Age groups of the MovieLens-1M documentation, applied to ML-100K's exact ages.
_AGE_EDGES = (18, 25, 35, 45, 50, 56)


def load_user_features(source: str | pathlib.Path, user_ids: tuple[str, ...]) -> np.ndarray:
    """Demographics as a float32 [len(user_ids), features] one-hot matrix, rows in the
    order of user_ids: age group (7), gender, occupation (one column per value seen).

    source: "ml-100k" (the .user file in recbole), a recbole .user file, or MovieLens'
    u.user (user|age|gender|occupation|zip). A user missing from the file gets zeros.
    """
    if str(source) == MOVIELENS_100K:
        path = movielens_100k_dir() / "ml-100k.user"
    else:
        path = pathlib.Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"source: no such file {str(path)!r}")
    with open(path, encoding="latin-1") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    delimiter = "\t" if "\t" in lines[0] else "|"
    rows = [line.split(delimiter) for line in lines]
    if _looks_like_header(rows[0]):
        rows = rows[1:]
    people = {}
    for n, row in enumerate(rows, start=1):
        if len(row) < 4:
            raise ValueError(f"{path}: line {n} needs user, age, gender, occupation, got {row!r}")
        try:
            age = int(row[1])
        except ValueError:
            raise ValueError(f"{path}: line {n}: age {row[1]!r} is not an integer") from None
        people[row[0].strip()] = (age, row[2].strip().upper(), row[3].strip().lower())
    genders = sorted({g for _, g, _ in people.values()})
    jobs = sorted({j for _, _, j in people.values()})
    width = len(_AGE_EDGES) + 1 + len(genders) + len(jobs)
    features = np.zeros((len(user_ids), width), dtype=np.float32)
    for row, user in enumerate(user_ids):
        if user not in people:
            continue
        age, gender, job = people[user]
        features[row, int(np.searchsorted(_AGE_EDGES, age, side="right"))] = 1
        features[row, len(_AGE_EDGES) + 1 + genders.index(gender)] = 1
        features[row, len(_AGE_EDGES) + 1 + len(genders) + jobs.index(job)] = 1
    return features
