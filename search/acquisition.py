"""Acquisition functions: how much the sampler wants to measure a policy next.

``ACQUISITIONS`` names every criterion the sampler offers. Two of them score any policy
and are maximized by the genetic search (``EVOLVED``); "landing" instead proposes the
solver's own answers and their neighbours (``search.landing``).

The evolved ones take a fitted predictor with an sklearn-style ``predict(X,
return_std=True)`` returning ``(mean, std)``. Larger is more wanted. A cost window turns
either one into an objective that prefers every policy inside the window over every
policy outside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from search.levels import Levels

ACQUISITIONS = ("landing", "disagreement", "sensitivity")
EVOLVED = ("disagreement", "sensitivity")  # the ones the genetic search maximizes
OUTSIDE = -1e9  # objective offset for policies outside the cost window

CostFn = Callable[[np.ndarray], np.ndarray]


class Predictor(Protocol):
    """The sklearn-style regressor the sampler fits: ``predict`` must give a std."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> Any: ...

    def predict(self, X: np.ndarray, return_std: bool = ...) -> Any: ...


def disagreement(predictor: Predictor, x: np.ndarray) -> np.ndarray:
    """Predicted std (ensemble disagreement) at each policy."""
    return np.asarray(predictor.predict(x, return_std=True)[1], dtype=np.float64)


def sensitivity(predictor: Predictor, levels: Levels, x: np.ndarray) -> np.ndarray:
    """Mean over dimensions of |mu(x) - mu(x with that dimension one level up/down)|."""
    idx = levels.to_index(x)
    n, dim = idx.shape
    top = levels.sizes - 1
    eye = np.eye(dim, dtype=np.int64)
    up, down = idx[:, None, :] + eye, idx[:, None, :] - eye  # (N, D, D): row d moves dim d
    ok_up, ok_down = idx < top, idx > 0  # (N, D): which moves stay on the grid
    moved = levels.from_index(np.concatenate([up[ok_up], down[ok_down]]))
    mu = np.asarray(predictor.predict(np.concatenate([x, moved]), return_std=True)[0])
    rows = np.broadcast_to(np.arange(n)[:, None], (n, dim))
    n_up = int(ok_up.sum())
    diff = np.zeros((n, dim))
    diff[ok_up] += np.abs(mu[n : n + n_up] - mu[rows[ok_up]])
    diff[ok_down] += np.abs(mu[n + n_up :] - mu[rows[ok_down]])
    per_dim = diff / np.maximum(ok_up.astype(np.float64) + ok_down, 1.0)
    movable = top > 0  # a dimension with a single level cannot move and carries no signal
    return per_dim[:, movable].mean(axis=1) if movable.any() else np.zeros(n)


def window_violation(c: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """How far each cost lies outside ``window``, in window widths (0 inside)."""
    if window is None:
        return np.zeros_like(c, dtype=np.float64)
    lo, hi = window
    span = max(hi - lo, 1e-12 * max(abs(hi), 1.0))
    return (np.maximum(lo - c, 0.0) + np.maximum(c - hi, 0.0)) / span


def acquisition_objective(
    name: str,
    predictor: Predictor,
    levels: Levels,
    cost: CostFn | None = None,
    window: tuple[float, float] | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """The GA's objective on (N, D) level indices: the acquisition, sunk outside the window."""
    if name not in EVOLVED:
        raise ValueError(f"an evolved acquisition must be one of {EVOLVED}, got {name!r}")

    def objective(idx: np.ndarray) -> np.ndarray:
        x = levels.from_index(idx)
        acq = (
            disagreement(predictor, x)
            if name == "disagreement"
            else sensitivity(predictor, levels, x)
        )
        if cost is None or window is None:
            return acq
        gap = window_violation(np.asarray(cost(x), dtype=np.float64), window)
        # Every policy outside ranks below every policy inside, nearer ones higher, so
        # the population is pulled into the window rather than wandering outside it.
        return np.where(gap == 0, acq, OUTSIDE * (1.0 + gap))

    return objective
