"""Per-layer bit allocation as an integer linear program (the HAWQ-V3 formulation).

Each layer ``l`` takes exactly one of ``C`` choices (e.g. a weight bit-width); choice
``c`` costs ``cost[k][l, c]`` of every budgeted resource ``k`` and adds ``sensitivity[l, c]``
to the objective. The program picks the choice per layer that minimises the summed
sensitivity with every summed cost within its budget:

    min  sum_lc s[l, c] x[l, c]
    s.t. sum_c x[l, c] = 1                  for every layer l
         sum_lc cost_k[l, c] x[l, c] <= B_k  for every budget k
         x binary

Assumptions, stated once: sensitivities add up over layers (HAWQ's second-order,
layer-separable model); costs are separable too (a layer's BitOPs or bytes depend on its
own choice only, the rest fixed by the caller and taken out of ``B_k``). A choice with
sensitivity ``inf`` is not allowed. Solved exactly with ``scipy.optimize.milp`` (HiGHS).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

# Relative margins under each budget, tried in turn: HiGHS may return a point that breaks a
# budget by up to its feasibility tolerance, which rounding then makes real.
_MARGINS = (0.0, 1e-9, 1e-7, 1e-5)
_ROUNDING = 1e-12  # relative: float sums of the same costs in another order may differ by this


def allocate(
    sensitivity: np.ndarray, costs: Mapping[str, np.ndarray], budgets: Mapping[str, float]
) -> np.ndarray:
    """Index of the chosen option per layer, shape (L,); ValueError when no choice fits."""
    s = np.asarray(sensitivity, dtype=np.float64)
    if s.ndim != 2 or s.size == 0:
        raise ValueError(
            f"sensitivity must be a non-empty (layers, choices) array, got shape {s.shape}"
        )
    if set(costs) != set(budgets):
        raise ValueError(
            f"costs {sorted(costs)} and budgets {sorted(budgets)} must name the same resources"
        )
    costs = {k: np.asarray(c, dtype=np.float64) for k, c in costs.items()}
    for k, c in costs.items():
        if c.shape != s.shape:
            raise ValueError(f"cost {k!r} has shape {c.shape}, sensitivity {s.shape}")
    if not np.isfinite(s).any(1).all():
        raise ValueError("every layer needs at least one allowed (finite-sensitivity) choice")
    for margin in _MARGINS:
        res = _solve(s, costs, budgets, margin)
        if res.x is None:
            if margin == 0.0:
                raise ValueError(f"no allocation meets the budgets ({res.message})")
            break
        choice = _polish(res.x.reshape(s.shape).argmax(1), s, costs, budgets)
        if _fits(choice, s, costs, budgets):
            return choice
    raise RuntimeError("the solver found no allocation that holds every budget after rounding")


def _solve(
    s: np.ndarray, costs: Mapping[str, np.ndarray], budgets: Mapping[str, float], margin: float
):
    """``scipy.optimize.milp`` on the program above, each budget lowered by ``margin`` (relative)."""
    n_layers, n_choices = s.shape
    allowed = np.isfinite(s)
    scale = np.abs(s[allowed]).max() or 1.0
    objective = np.where(allowed, s / scale, 0.0).ravel()
    rows, lower, upper = (
        [np.kron(np.eye(n_layers), np.ones(n_choices))],
        [np.ones(n_layers)],
        [np.ones(n_layers)],
    )
    for k, b in budgets.items():
        norm = abs(b) if b else 1.0
        rows.append((np.asarray(costs[k], dtype=np.float64) / norm).ravel()[None])
        lower.append(np.array([-np.inf]))
        upper.append(np.array([b / norm - margin]))
    return milp(
        objective,
        constraints=LinearConstraint(np.vstack(rows), np.concatenate(lower), np.concatenate(upper)),
        integrality=np.ones(objective.size),
        bounds=Bounds(0.0, allowed.ravel().astype(np.float64)),
        options={"mip_rel_gap": 0.0},
    )


def total(values: np.ndarray, choice: np.ndarray) -> float:
    """Sum over layers of ``values[l, choice[l]]``."""
    return float(np.asarray(values, dtype=np.float64)[np.arange(len(choice)), choice].sum())


def _polish(
    choice: np.ndarray, s: np.ndarray, costs: Mapping[str, np.ndarray], budgets: Mapping[str, float]
) -> np.ndarray:
    """Take every single-layer switch that lowers the sensitivity and keeps every budget.

    HiGHS stops within its tolerances, so choices that differ by less than about 1e-6 of the
    largest sensitivity can come back arbitrary (e.g. a layer left at a low bit-width under a
    budget that allows more); this exact pass removes such slack.
    """
    choice = choice.copy()
    used = {k: total(costs[k], choice) for k in budgets}
    improved = True
    while improved:
        improved = False
        for layer in range(len(choice)):
            for c in np.argsort(s[layer], kind="stable"):
                if not s[layer, c] < s[layer, choice[layer]]:
                    break
                delta = {k: costs[k][layer, c] - costs[k][layer, choice[layer]] for k in budgets}
                if all(used[k] + delta[k] <= b + _ROUNDING * abs(b) for k, b in budgets.items()):
                    used = {k: used[k] + delta[k] for k in budgets}
                    choice[layer], improved = c, True
                    break
    return choice


def _fits(
    choice: np.ndarray, s: np.ndarray, costs: Mapping[str, np.ndarray], budgets: Mapping[str, float]
) -> bool:
    """The rounded solution is allowed and within every budget, recomputed exactly."""
    return bool(np.isfinite(s[np.arange(len(choice)), choice]).all()) and all(
        total(costs[k], choice) <= b + _ROUNDING * abs(b) for k, b in budgets.items()
    )
