"""In-memory data: samples and their conditions as tensors, indexed a batch at a time."""

from __future__ import annotations

import torch

from ..models.condition import check_condition


class ArrayData(torch.utils.data.Dataset):
    """Samples x [N, ...] with optional conditions, held in memory.

    x: float samples (images in [-1, 1], vectors in their own units), or uint8 images
    0..255 (kept as bytes to save memory, scaled to [-1, 1] when indexed).
    cond: int [N] (class labels or user ids) or float [N, A] (attributes); None for
    unconditional data. cond_kind says which ('label', 'attributes', 'user').
    cond_names: a name per class or attribute (sample grids, the `sample` command).

    data[index] with an int or a LongTensor of indices gives (x, c), c None when
    unconditional: the Trainer draws whole batches this way.
    """

    def __init__(self, x: torch.Tensor, cond: torch.Tensor | None = None, *, cond_kind: str = "none",
                 cond_size: int = 0, cond_names: list[str] | None = None, name: str = "data"):
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
            raise ValueError(f"{name}: x must be a tensor of at least one sample [N, ...], got {getattr(x, 'shape', x)!r}")
        if not (x.is_floating_point() or x.dtype == torch.uint8):
            raise TypeError(f"{name}: x must be float or uint8, got {x.dtype}")
        self.cond_kind, self.cond_size = check_condition(cond_kind, cond_size)
        if (cond is None) != (self.cond_kind == "none"):
            raise ValueError(f"{name}: give cond exactly when cond_kind is not 'none' (cond_kind={cond_kind!r})")
        if cond is not None:
            if cond.shape[0] != x.shape[0]:
                raise ValueError(f"{name}: {cond.shape[0]} conditions for {x.shape[0]} samples")
            if self.cond_kind == "attributes":
                if cond.dim() != 2 or cond.shape[1] != self.cond_size or not cond.is_floating_point():
                    raise ValueError(f"{name}: attributes must be float [N, {self.cond_size}], got {cond.dtype} {tuple(cond.shape)}")
            else:
                if cond.dim() != 1 or cond.is_floating_point():
                    raise ValueError(f"{name}: {self.cond_kind} conditions must be integers [N], got {cond.dtype} {tuple(cond.shape)}")
                cond = cond.long()
                if cond.min() < 0 or cond.max() >= self.cond_size:
                    raise ValueError(f"{name}: {self.cond_kind} values must lie in [0, {self.cond_size}), got {int(cond.min())}..{int(cond.max())}")
        self.x, self.cond = x, cond
        self.cond_names = list(cond_names) if cond_names is not None else None
        self.name = name

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x.dim() == 4

    def __getitem__(self, index):
        x = self.x[index]
        if x.dtype == torch.uint8:
            x = x.float() / 127.5 - 1.0
        return x, (None if self.cond is None else self.cond[index])

    def to(self, device) -> "ArrayData":
        """The same data with its tensors on `device` (small data sets live on the GPU)."""
        out = object.__new__(ArrayData)
        out.__dict__.update(self.__dict__)
        out.x = self.x.to(device)
        out.cond = None if self.cond is None else self.cond.to(device)
        return out

    def with_condition(self, cond_kind: str) -> "ArrayData":
        """The data under another reading of its condition: 'none' drops it; labels
        become one-hot 'attributes' or ids of 'user's; a single integer attribute
        column becomes 'label' or 'user' values."""
        if cond_kind in ("auto", self.cond_kind):
            return self
        cond, size, names = self.cond, self.cond_size, self.cond_names
        if cond_kind == "none":
            cond, size, names = None, 0, None
        elif self.cond_kind == "none":
            raise ValueError(f"{self.name} has no condition to use as {cond_kind!r}")
        elif self.cond_kind in ("label", "user") and cond_kind == "attributes":
            cond = torch.nn.functional.one_hot(cond, size).float()
            names = names if names is not None else [str(i) for i in range(size)]
        elif self.cond_kind in ("label", "user") and cond_kind in ("label", "user"):
            pass
        elif self.cond_kind == "attributes" and cond_kind in ("label", "user"):
            if size != 1 or not torch.equal(cond, cond.round()) or cond.min() < 0:
                raise ValueError(
                    f"{self.name}: cond {cond_kind!r} needs exactly one attribute column of non-negative integers "
                    f"(class or user ids), but the data has {size} attribute column(s)"
                    + ("" if size != 1 else " with non-integer or negative values")
                )
            cond = cond[:, 0].long()
            size, names = int(cond.max()) + 1, None
        else:
            raise ValueError(f"{self.name}: cannot use {self.cond_kind!r} conditions as {cond_kind!r}")
        return ArrayData(self.x, cond, cond_kind=cond_kind, cond_size=size, cond_names=names, name=self.name)
