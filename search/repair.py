"""The discrete side of a search: level tables as tensors, greedy repair and fill.

Everything here works on level *indices* (one long tensor row per policy) and is
batched over rows and over candidate coordinates, so a greedy step costs one
objective call, not one per dimension. It relies on the fact stated in
``search.levels``: every cost is non-decreasing in every coordinate, so stepping
down never breaks a budget and the lower corner is the cheapest policy there is.
(ONNX Runtime latency is the exception, see ``seernet.space.costs``: repair then counts
only moves that save on a violated budget, and ``search.solver.floor_index`` names a
cheaper start; every answer's budgets are checked exactly either way.)

Costs are evaluated on float64 policies (budgets are checked exactly); the objective
gets policies in torch's default dtype, the one predictors are trained in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from search.levels import Levels

CostFn = Callable[[Tensor], Tensor]
MeanStdFn = Callable[[Tensor], tuple[Tensor, Tensor]]

_F64 = torch.float64


class LevelGrid:
    """A ``Levels`` as a padded (D, L) tensor, with per-dimension index bounds.

    Frozen dimensions (``fixed``) get equal lower and upper index bounds, so no
    relaxation, repair or fill can move them.
    """

    def __init__(
        self,
        levels: Levels,
        fixed: np.ndarray | None = None,
        fixed_values: np.ndarray | None = None,
    ) -> None:
        sizes = levels.sizes
        table = np.empty((levels.dim, int(sizes.max())))
        for d, v in enumerate(levels.values):  # one-off set-up, padded with the top value
            table[d, : v.size] = v
            table[d, v.size :] = v[-1]
        self.levels = levels
        self.table = torch.tensor(table, dtype=_F64)
        self.dims = torch.arange(levels.dim)
        self.lo_idx = torch.zeros(levels.dim, dtype=torch.long)
        self.hi_idx = torch.tensor(sizes - 1, dtype=torch.long)
        if fixed is not None:
            self._freeze(np.asarray(fixed, dtype=bool), fixed_values)

    def _freeze(self, fixed: np.ndarray, fixed_values: np.ndarray | None) -> None:
        if fixed.shape != (self.dim,):
            raise ValueError(f"fixed must be a boolean mask of shape ({self.dim},)")
        if fixed_values is None:
            raise ValueError("fixed dimensions need fixed_values")
        vals = np.where(fixed, np.asarray(fixed_values, dtype=np.float64), self.levels.lower)
        idx = self.levels.to_index(vals)
        off = np.abs(self.levels.from_index(idx) - vals) > 1e-6
        if np.any(off & fixed):
            bad = np.flatnonzero(off & fixed).tolist()
            raise ValueError(f"fixed values of dimensions {bad} are not on their levels")
        idx_t = torch.tensor(idx, dtype=torch.long)
        mask = torch.tensor(fixed)
        self.lo_idx = torch.where(mask, idx_t, self.lo_idx)
        self.hi_idx = torch.where(mask, idx_t, self.hi_idx)

    @property
    def dim(self) -> int:
        return self.levels.dim

    def values(self, idx: Tensor) -> Tensor:
        """Encoded float64 policies (M, D) for level indices (M, D)."""
        return self.table[self.dims, idx]

    @property
    def lower(self) -> Tensor:
        return self.values(self.lo_idx[None])[0]

    @property
    def upper(self) -> Tensor:
        return self.values(self.hi_idx[None])[0]

    def floor_index(self, x: Tensor) -> Tensor:
        """Index of the largest level <= x, per coordinate, within the bounds."""
        i = torch.searchsorted(self.table, x.to(_F64).T.contiguous() + 1e-9, right=True).T - 1
        return torch.minimum(torch.maximum(i, self.lo_idx), self.hi_idx)

    def nearest_index(self, x: Tensor) -> Tensor:
        """Index of the nearest level, per coordinate, within the bounds."""
        x = x.to(_F64)
        f = self.floor_index(x)
        c = torch.minimum(f + 1, self.hi_idx)
        up = (self.values(c) - x).abs() < (x - self.values(f)).abs()
        return torch.where(up, c, f)


class Problem:
    """Objective, costs and budgets of one search, evaluated on batches of policies."""

    def __init__(
        self,
        mean_std: MeanStdFn,
        costs: Mapping[str, CostFn],
        budgets: Mapping[str, float],
        grid: LevelGrid,
        risk: float = 0.0,
    ) -> None:
        missing = sorted(set(budgets) - set(costs))
        if missing:
            raise ValueError(f"budgets without a cost function: {missing}")
        if not budgets:
            raise ValueError("at least one budget is needed")
        if any(not b > 0 for b in budgets.values()):
            raise ValueError(f"budgets must be positive, got {dict(budgets)}")
        self.mean_std = mean_std
        self.costs = dict(costs)
        self.budgets = {k: float(v) for k, v in budgets.items()}
        self.names = list(self.budgets)
        self.bvec = torch.tensor([self.budgets[k] for k in self.names], dtype=_F64)
        self.grid = grid
        self.risk = float(risk)
        self.obj_dtype = torch.get_default_dtype()

    def normalized_costs(self, x: Tensor) -> Tensor:
        """Budgeted costs divided by their budgets, (M, K); feasible means all <= 1."""
        x = x.to(_F64)
        cols = [self.costs[k](x).to(_F64).reshape(-1) for k in self.names]
        return torch.stack(cols, dim=1) / self.bvec

    def objective(self, x: Tensor) -> Tensor:
        """Predicted mean minus ``risk`` times the ensemble spread, float64 (M,)."""
        mean, std = self.mean_std(x.to(self.obj_dtype))
        obj = mean.reshape(-1) - self.risk * std.reshape(-1) if self.risk else mean.reshape(-1)
        return obj.to(_F64)

    def feasible(self, idx: Tensor) -> Tensor:
        """Which index rows meet every budget exactly, (M,) bool."""
        return (self.normalized_costs(self.grid.values(idx)) <= 1.0).all(dim=1)


def _neighbours(grid: LevelGrid, idx: Tensor, step: int) -> tuple[Tensor, Tensor]:
    """All one-level moves of every row, (M, D, D) policies, and which moves exist, (M, D)."""
    moved = torch.minimum(torch.maximum(idx + step, grid.lo_idx), grid.hi_idx)
    valid = moved != idx
    eye = torch.eye(grid.dim, dtype=torch.bool)
    x = grid.values(idx)
    xn = torch.where(eye[None], grid.values(moved)[:, None, :], x[:, None, :])
    return xn, valid


def _eval_moves(problem: Problem, idx: Tensor, step: int) -> tuple[Tensor, Tensor, Tensor]:
    """Objective (M, D) and normalized costs (M, D, K) of each row's one-level moves."""
    xn, valid = _neighbours(problem.grid, idx, step)
    m, d = valid.shape
    obj = torch.full((m, d), float("nan"), dtype=_F64)
    cost = torch.full((m, d, len(problem.names)), float("nan"), dtype=_F64)
    if valid.any():
        flat = xn[valid]
        obj[valid] = problem.objective(flat)
        cost[valid] = problem.normalized_costs(flat)
    return obj, cost, valid


def _take_prefix(score: Tensor, amount: Tensor, limit: Tensor) -> Tensor:
    """Mask of each row's best-scored moves (ascending score) whose amounts, summed
    before each one, stay under ``limit``; the best finite move is always taken."""
    order = score.argsort(dim=1)
    s_score = score.gather(1, order)
    s_amount = amount.gather(1, order)
    before = s_amount.cumsum(dim=1) - s_amount
    take = torch.isfinite(s_score) & (before < limit[:, None])
    take[:, 0] = torch.isfinite(s_score[:, 0])
    return torch.zeros_like(take).scatter(1, order, take)


def _repair_round(problem: Problem, idx: Tensor) -> Tensor:
    """One greedy round: step down the moves with least objective lost per cost saved."""
    x = problem.grid.values(idx)
    base = problem.objective(x)
    cur = problem.normalized_costs(x)
    excess = (cur - 1.0).clamp_min(0.0)
    obj, cost, valid = _eval_moves(problem, idx, -1)
    # Savings only count on violated budgets, and only up to the violation.
    saved = torch.minimum(cur[:, None, :] - cost, excess[:, None, :]).clamp_min(0.0).sum(dim=2)
    useful = valid & (saved > 0)
    ratio = torch.where(useful, (base[:, None] - obj) / saved.clamp_min(1e-300), torch.inf)
    # Several moves per round while far from feasible; a conservative half of the
    # excess because savings of coupled coordinates (bilinear costs) overlap.
    take = _take_prefix(ratio, torch.where(useful, saved, 0.0), 0.5 * excess.sum(dim=1))
    return idx - take.long()


def repair(problem: Problem, idx: Tensor, max_rounds: int | None = None) -> Tensor:
    """Step coordinates down greedily until every row meets every budget exactly."""
    idx = idx.clone()
    rounds = max_rounds or int((problem.grid.hi_idx - problem.grid.lo_idx).sum()) + 1
    with torch.no_grad():
        bad = ~problem.feasible(idx)
        for _ in range(rounds):
            if not bad.any():
                break
            rows = bad.nonzero().squeeze(1)
            new = _repair_round(problem, idx[rows])
            if torch.equal(new, idx[rows]):
                break  # nothing can go down any more: only possible below the minimum
            idx[rows] = new
            bad[rows] = ~problem.feasible(new)
    return idx


def _fill_round(problem: Problem, idx: Tensor, tol: float) -> tuple[Tensor, Tensor]:
    """One greedy round of feasible, improving up-moves; returns new rows and which moved."""
    x = problem.grid.values(idx)
    base = problem.objective(x)
    cur = problem.normalized_costs(x)
    obj, cost, valid = _eval_moves(problem, idx, +1)
    gain = obj - base[:, None]
    ok = valid & (cost <= 1.0).all(dim=2) & (gain > tol)
    added = (cost - cur[:, None, :]).clamp_min(0.0)
    score = torch.where(ok, -gain / (added.sum(dim=2) + 1e-12), torch.inf)
    slack = (1.0 - cur).clamp_min(0.0)
    # Scalar prefix limit: the tightest budget's share of its own slack.
    share = torch.where(ok[..., None], added / slack[:, None, :].clamp_min(1e-300), 0.0)
    take = _take_prefix(score, share.max(dim=2).values, torch.full_like(base, 0.5))
    single = torch.zeros_like(take).scatter(1, score.argmin(dim=1, keepdim=True), True) & ok
    multi = idx + take.long()
    one = idx + single.long()
    # Coupled moves can break a budget or cancel out: fall back to the single best.
    better = problem.feasible(multi) & (
        problem.objective(problem.grid.values(multi)) >= problem.objective(problem.grid.values(one))
    )
    new = torch.where(better[:, None], multi, one)
    return new, ok.any(dim=1)


def fill(problem: Problem, idx: Tensor, max_rounds: int | None = None, tol: float = 1e-9) -> Tensor:
    """Step coordinates up greedily while every budget holds and the objective rises."""
    idx = idx.clone()
    rounds = max_rounds or int((problem.grid.hi_idx - problem.grid.lo_idx).sum()) + 1
    with torch.no_grad():
        active = problem.feasible(idx)
        for _ in range(rounds):
            if not active.any():
                break
            rows = active.nonzero().squeeze(1)
            new, moved = _fill_round(problem, idx[rows], tol)
            idx[rows] = new
            active[rows] = moved
    return idx


def round_tight(problem: Problem, x: Tensor, iters: int = 24) -> Tensor:
    """Round relaxed rows to levels: up where the fractional part exceeds a per-row
    threshold, the lowest threshold (found by bisection) that keeps every budget."""
    grid = problem.grid
    with torch.no_grad():
        f = grid.floor_index(x)
        c = torch.minimum(f + 1, grid.hi_idx)
        lo_v, hi_v = grid.values(f), grid.values(c)
        width = hi_v - lo_v
        frac = torch.where(width > 0, (x.to(_F64) - lo_v) / width.clamp_min(1e-300), 0.0)
        lo = torch.zeros(x.shape[0], dtype=_F64)
        hi = torch.ones(x.shape[0], dtype=_F64)  # threshold 1 is the floor: always feasible
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            ok = problem.feasible(torch.where(frac >= mid[:, None], c, f))
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
        return torch.where(frac >= hi[:, None], c, f)
