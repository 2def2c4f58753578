"""What the predictor may promise: monotone directions, an accuracy cap, a calibrated spread.

Assumptions, stated once:
- Directions are given, never guessed: the caller says per input whether the target
  rises (+1), falls (-1) or may do either (0) with it; without directions nothing is
  assumed. With directions the best policy is the corner with every increasing input
  at its maximum and every decreasing input at its minimum (the all-ones row for
  seernet's codec, whose space passes +1 for every input).
- No policy is more accurate than that corner. Its measured accuracy, plus a margin for
  measurement noise, caps every prediction; without directions there is no known best
  corner and the best measured accuracy does.
- The ensemble's spread is right up to one factor, which held-out residuals fix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

Monotone = bool | Sequence[int] | np.ndarray | None


def resolve_signs(monotone: Monotone, n_features: int) -> np.ndarray | None:
    """The per-input directions (+1 increasing, -1 decreasing, 0 free), or None for no constraint.

    None or False: no constraint. True: +1 for every input (kept for files and callers
    from before directions were explicit). An array: one sign per input, as
    scikit-learn's ``monotonic_cst``; all zeros is the same as None.
    """
    if monotone is None:
        return None
    if isinstance(monotone, bool | np.bool_):
        return np.ones(n_features) if monotone else None
    signs = np.asarray(monotone, dtype=np.float64)
    if signs.shape != (n_features,) or not np.isin(signs, (-1.0, 0.0, 1.0)).all():
        got = np.unique(signs).tolist() if signs.size <= 1000 else "too many values"
        raise ValueError(
            f"monotone must be None, True, False or one entry of -1, 0 or +1 per input "
            f"({n_features}), got {signs.size} entries with values {got}"
        )
    return signs if signs.any() else None


def best_corner_rows(X: np.ndarray, signs: np.ndarray | None) -> np.ndarray:
    """Mask of rows at the best corner: every constrained input at the best end of its observed range.

    For seernet's codec that is the all-ones row (the unpruned highest-bit policy) when it
    was measured. By monotonicity no other row can be truly better. Without directions
    (``signs`` None) no row is known to be best: the mask is all False.
    """
    if signs is None:
        return np.zeros(X.shape[0], dtype=bool)
    best = np.where(signs > 0, X.max(axis=0), X.min(axis=0))
    on = signs != 0
    return np.all(X[:, on] == best[on], axis=1)


def repeat_noise_std(X: np.ndarray, y: np.ndarray) -> float | None:
    """Pooled within-policy std of repeated measurements (rows with identical X); None without repeats."""
    _, inverse, counts = np.unique(X, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    dof = int((counts - 1).sum())
    if dof == 0:
        return None
    means = np.bincount(inverse, weights=y) / counts
    return float(np.sqrt(np.sum((y - means[inverse]) ** 2) / dof))


def soft_cap(m: torch.Tensor, cap: float, width: float) -> torch.Tensor:
    """``cap - width * softplus((cap - m) / width)``: increasing in m, never above cap, ~m far below it.

    The cap is rounded down to m's dtype, so that the promise holds in float32 too.
    """
    c = torch.tensor(cap, dtype=torch.float64).to(m.dtype)
    if float(c) > cap:
        c = torch.nextafter(c, torch.tensor(-float("inf"), dtype=m.dtype))
    c = c.to(m.device)
    return c - width * torch.nn.functional.softplus((c - m) / width)


def conformal_scale(
    abs_resid: np.ndarray, std: np.ndarray, coverage: float, z: float = 2.0
) -> float:
    """Smallest factor c with ``|r| <= z * c * std`` on a ``coverage`` share of the rows.

    Split conformal: the ceil((n + 1) * coverage)-th smallest ratio, so that a new
    exchangeable point is covered with probability at least ``coverage``; with too few
    rows for that the largest ratio is used.
    """
    ratio = np.sort(abs_resid / np.maximum(std, 1e-12)) / z
    k = min(int(np.ceil((len(ratio) + 1) * coverage)), len(ratio))
    return float(ratio[k - 1])
