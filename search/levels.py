"""The discrete grid a policy lives on, as the search algorithms see it.

A policy is a vector in [0, 1]^D. Dimension ``d`` may only take the values in
``levels[d]`` (sorted ascending). The application's codec guarantees one more fact
that the search code relies on: every cost is non-decreasing in every coordinate, so
stepping a coordinate down one level never makes any cost larger.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Levels:
    """Valid encoded values per dimension, with snapping and neighbour steps."""

    def __init__(self, levels: Sequence[Sequence[float]]) -> None:
        if len(levels) == 0:
            raise ValueError("a policy space needs at least one dimension")
        self.values: list[np.ndarray] = []
        for d, lv in enumerate(levels):
            arr = np.unique(np.asarray(lv, dtype=np.float64))
            if arr.size == 0 or arr[0] < 0.0 or arr[-1] > 1.0:
                raise ValueError(f"dimension {d}: levels must be a non-empty subset of [0, 1]")
            self.values.append(arr)

    @property
    def dim(self) -> int:
        return len(self.values)

    @property
    def sizes(self) -> np.ndarray:
        """Number of valid values per dimension."""
        return np.array([v.size for v in self.values])

    @property
    def lower(self) -> np.ndarray:
        return np.array([v[0] for v in self.values])

    @property
    def upper(self) -> np.ndarray:
        return np.array([v[-1] for v in self.values])

    def to_index(self, x: np.ndarray) -> np.ndarray:
        """Index of the nearest valid value, per coordinate; ``x`` is (D,) or (N, D)."""
        x = np.asarray(x, dtype=np.float64)
        flat = x.reshape(-1, self.dim)
        out = np.empty(flat.shape, dtype=np.int64)
        for d, v in enumerate(self.values):
            out[:, d] = np.abs(flat[:, d : d + 1] - v[None, :]).argmin(axis=1)
        return out.reshape(x.shape)

    def from_index(self, idx: np.ndarray) -> np.ndarray:
        """Encoded values for per-coordinate level indices; (D,) or (N, D)."""
        idx = np.asarray(idx, dtype=np.int64)
        flat = idx.reshape(-1, self.dim)
        out = np.empty(flat.shape, dtype=np.float64)
        for d, v in enumerate(self.values):
            out[:, d] = v[np.clip(flat[:, d], 0, v.size - 1)]
        return out.reshape(idx.shape)

    def snap(self, x: np.ndarray) -> np.ndarray:
        """Round every coordinate to its nearest valid value."""
        return self.from_index(self.to_index(x))

    def floor(self, x: np.ndarray) -> np.ndarray:
        """Round every coordinate down to a valid value (never increases any cost)."""
        x = np.asarray(x, dtype=np.float64)
        flat = x.reshape(-1, self.dim)
        out = np.empty(flat.shape, dtype=np.float64)
        for d, v in enumerate(self.values):
            i = np.searchsorted(v, flat[:, d] + 1e-9, side="right") - 1
            out[:, d] = v[np.clip(i, 0, v.size - 1)]
        return out.reshape(x.shape)

    def window(self, center: np.ndarray, radius: int) -> Levels:
        """The levels within ``radius`` steps of ``center``'s level, per dimension: a trust
        region around a measured policy (``center`` is one of its own points)."""
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        idx = self.to_index(np.asarray(center, dtype=np.float64).reshape(self.dim))
        return Levels(
            [v[max(0, i - radius) : i + radius + 1] for v, i in zip(self.values, idx, strict=True)]
        )

    def random(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` policies drawn uniformly over each dimension's levels, shape (n, D)."""
        idx = np.stack([rng.integers(0, v.size, size=n) for v in self.values], axis=1)
        return self.from_index(idx)
