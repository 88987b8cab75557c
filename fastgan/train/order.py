"""The order in which samples are drawn: one global sequence of indices, the same in
every process, so a run's batches depend on the seed only (not on the number of
processes) and resume exactly from (epoch, position)."""

from __future__ import annotations

import torch


class BatchOrder:
    """Walks a fresh permutation of range(n) each epoch; the permutation of epoch e is
    drawn from a generator seeded with (seed, e), so the state is two integers."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self.epoch, self.position = 0, 0
        self._perm, self._perm_epoch = None, None

    def _permutation(self) -> torch.Tensor:
        if self._perm_epoch != self.epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=gen), self.epoch
        return self._perm

    def next(self, batch: int) -> torch.Tensor:
        """The next `batch` indices (crossing into the next epoch when this one ends)."""
        parts, need = [], batch
        while need:
            take = min(need, self.n - self.position)
            parts.append(self._permutation()[self.position:self.position + take])
            self.position += take
            need -= take
            if self.position == self.n:
                self.epoch, self.position = self.epoch + 1, 0
        return torch.cat(parts)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
