"""Batch iteration: in-memory tensor datasets are sliced directly (fast on 2 cores)."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, default_collate

from seernet.errors import UserError

# A Subset's gathered tensors, kept while the Subset lives: every measured policy iterates
# the same train split 3-4 times, and each gather of 55,000 images is a 172 MB copy (0.1 s
# alone; with two collect workers sharing memory bandwidth it cost far more).
_GATHERED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def as_tensors(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The (x, y) tensors behind a TensorDataset or a Subset of one, else None."""
    if isinstance(ds, TensorDataset):
        return ds.tensors[0], ds.tensors[1]
    if not isinstance(ds, Subset):
        return None
    cached = _GATHERED.get(ds)
    if cached is not None and cached[0] is ds.indices:
        return cached[1]
    inner = as_tensors(ds.dataset)
    if inner is None:
        return None
    idx = torch.as_tensor(list(ds.indices), dtype=torch.long)
    _GATHERED[ds] = (ds.indices, (inner[0][idx], inner[1][idx]))
    return _GATHERED[ds][1]


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random shift (crop of a zero-padded image) and horizontal flip, per sample."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (torch.arange(h)[None, :] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w)[None, :] + dx[:, None])[:, None, None, :]
    batch_idx = torch.arange(n)[:, None, None, None]
    chan_idx = torch.arange(x.shape[1])[None, :, None, None]
    out = padded[batch_idx, chan_idx, rows, cols]
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


class TensorBatches:
    """Iterate (x, y) batches of an in-memory dataset; reshuffled per epoch from ``seed``."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        train_augment: bool = False,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.train_augment = train_augment
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.y) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        order = torch.randperm(n, generator=self.gen) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            xb = self.x[idx]
            if self.train_augment:
                xb = augment(xb, self.gen)
            yield xb, self.y[idx]


def batches(
    ds: Dataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    train_augment: bool = False,
    limit: int | None = None,
) -> TensorBatches | DataLoader:
    """A seeded batch iterable over ``ds``; ``limit`` keeps only its first ``limit`` items."""
    if limit is not None and limit < len(ds):
        ds = Subset(ds, range(limit))
    tensors = as_tensors(ds)
    if tensors is not None:
        return TensorBatches(*tensors, batch_size, shuffle, seed, train_augment)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=0,
                      collate_fn=_collate)  # fmt: skip


def _collate(items: list) -> object:
    """torch's default collate; inputs of mixed sizes are the user's to fix: one line."""
    try:
        return default_collate(items)
    except RuntimeError as exc:
        if "equal size" not in str(exc):
            raise
        raise UserError(
            f"a batch holds inputs of mixed sizes ({exc}): resize them to one size in your Dataset"
        ) from None
