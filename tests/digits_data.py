"""sklearn's 8x8 digits scaled to [-1, 1], split 1437 / 360 with a fixed seed, and the
feature classifier trained on the 1437: built once per test session."""

import functools

import torch

from fastgan import metrics as M


@functools.lru_cache(maxsize=1)
def digits_and_classifier():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 8.0 - 1.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(data.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = order[:1437], order[1437:]
    # Small matrices: extra threads only spin-wait on a busy machine (30x slower here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        classifier = M.train_classifier(x[train], y[train], epochs=30, seed=0)
    finally:
        torch.set_num_threads(threads)
    return classifier, x[train], y[train], x[test], y[test]
