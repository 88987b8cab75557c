"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): no download needed."""

from __future__ import annotations

import torch

from .arrays import ArrayData


def digits() -> ArrayData:
    """Images [1797, 1, 8, 8] scaled from 0..16 to [-1, 1], digit labels as the condition."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    return ArrayData(x, labels, cond_kind="label", cond_size=10, cond_names=[str(d) for d in range(10)], name="digits")
