"""fastgan.train.distributed alone (one process): the batch split, each process's share,
the DDP wrapper and the micro-batch sync contexts. tests/test_distributed.py runs
two processes under torchrun."""

import contextlib

import pytest
import torch
from torch import nn

from fastgan.train import distributed
from fastgan.train.distributed import World


def test_split_batch_over_processes_and_micro_batches():
    assert distributed.split_batch(8, World(), 1) == (8, 8)
    assert distributed.split_batch(8, World(rank=1, size=2), 2) == (4, 2)
    assert distributed.split_batch(12, World(size=3), 4) == (4, 1)


@pytest.mark.parametrize("batch, size, accumulate", [(9, 2, 1), (8, 1, 3), (8, 2, 3)])
def test_split_batch_refuses_uneven_splits(batch, size, accumulate):
    with pytest.raises(ValueError, match=f"batch_size {batch} must split evenly over {size} process\\(es\\) x "
                                         f"{accumulate} accumulation"):
        distributed.split_batch(batch, World(size=size), accumulate)


def test_process_share_takes_this_rank_rows_of_the_global_batch():
    rows = torch.arange(12)
    shares = [rows[distributed.process_share(World(rank=r, size=3), 4)] for r in range(3)]
    assert [s.tolist() for s in shares] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


def test_wrap_is_the_model_itself_in_one_process():
    model = nn.Linear(2, 2)
    assert distributed.wrap(model, World(), torch.device("cpu")) is model


class RecordsNoSync(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    @contextlib.contextmanager
    def no_sync(self):
        self.calls += 1
        yield


def no_sync_per_micro_batch(accumulate, world):
    """Whether each micro-batch's sync context entered the model's no_sync()."""
    model, entered = RecordsNoSync(), []
    for i, sync in distributed.micro_batches(accumulate, model, world):
        before = model.calls
        with sync:
            pass
        entered.append((i, model.calls > before))
    return entered


def test_micro_batches_skip_the_all_reduce_until_the_last():
    assert no_sync_per_micro_batch(3, World(size=2)) == [(0, True), (1, True), (2, False)]
    assert no_sync_per_micro_batch(1, World(size=2)) == [(0, False)]
    assert no_sync_per_micro_batch(3, World()) == [(0, False), (1, False), (2, False)]


def test_setup_without_torchrun_is_one_process_on_the_given_device(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    world, device = distributed.setup("cpu")
    assert world == World() and not world.distributed and world.is_main
    assert device == torch.device("cpu")


@pytest.mark.parametrize("given, expected", [("cuda", "cuda:1"), ("cuda:0", "cuda:0"), (None, "cuda:1")])
def test_setup_resolves_cuda_without_an_index_to_the_current_device(monkeypatch, given, expected):
    """torch.cuda.set_device refuses a device without an index (seen on an H200 with
    torch 2.11: Trainer(device="cuda") failed there): "cuda" is the current device."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.append(torch.device(d)))
    _, device = distributed.setup(given)
    assert device == torch.device(expected) and chosen == [torch.device(expected)]


def test_all_reduce_and_barrier_are_no_ops_in_one_process():
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(t, World()) is t and t.tolist() == [1.0, 2.0]
    distributed.barrier(World())
