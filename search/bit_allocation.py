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

_MARGIN = 1e-9  # relative: keeps HiGHS's feasibility tolerance on the safe side of a budget


def allocate(
    sensitivity: np.ndarray, costs: Mapping[str, np.ndarray], budgets: Mapping[str, float]
) -> np.ndarray:
    """Index of the chosen option per layer, shape (L,); ValueError when no choice fits."""
    s = np.asarray(sensitivity, dtype=np.float64)
    if s.ndim != 2 or s.size == 0:
        raise ValueError(f"sensitivity must be a non-empty (layers, choices) array, got shape {s.shape}")
    if set(costs) != set(budgets):
        raise ValueError(f"costs {sorted(costs)} and budgets {sorted(budgets)} must name the same resources")
    n_layers, n_choices = s.shape
    allowed = np.isfinite(s)
    if not allowed.any(1).all():
        raise ValueError("every layer needs at least one allowed (finite-sensitivity) choice")
    scale = np.abs(s[allowed]).max() or 1.0
    objective = np.where(allowed, s / scale, 0.0).ravel()
    one_each = np.kron(np.eye(n_layers), np.ones(n_choices))
    rows, upper = [one_each], [np.ones(n_layers)]
    lower = [np.ones(n_layers)]
    for k, b in budgets.items():
        c = np.asarray(costs[k], dtype=np.float64)
        if c.shape != s.shape:
            raise ValueError(f"cost {k!r} has shape {c.shape}, sensitivity {s.shape}")
        norm = abs(b) if b else 1.0
        rows.append((c / norm).ravel()[None])
        upper.append(np.array([b / norm - _MARGIN]))
        lower.append(np.array([-np.inf]))
    res = milp(
        objective,
        constraints=LinearConstraint(np.vstack(rows), np.concatenate(lower), np.concatenate(upper)),
        integrality=np.ones(objective.size),
        bounds=Bounds(0.0, allowed.ravel().astype(np.float64)),
        options={"mip_rel_gap": 0.0},
    )
    if res.x is None:
        raise ValueError(f"no allocation meets the budgets ({res.message})")
    choice = _polish(res.x.reshape(n_layers, n_choices).argmax(1), s, costs, budgets)
    _check(choice, s, costs, budgets)
    return choice


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
                if all(used[k] + delta[k] <= b for k, b in budgets.items()):
                    used = {k: used[k] + delta[k] for k in budgets}
                    choice[layer], improved = c, True
                    break
    return choice


def _check(choice: np.ndarray, s: np.ndarray, costs: Mapping[str, np.ndarray], budgets: Mapping[str, float]) -> None:
    """The rounded solution is allowed and within every budget, recomputed exactly."""
    if not np.isfinite(s[np.arange(len(choice)), choice]).all():
        raise RuntimeError("the solver returned a disallowed choice")
    for k, b in budgets.items():
        used = total(costs[k], choice)
        if used > b:
            raise RuntimeError(f"the solver's allocation uses {used} of {k}, over the budget {b}")
