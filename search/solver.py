"""Barrier gradient ascent on a predictor: the SeerNet solver.

Maximizes ``mean(x) + mu * sum_k log(1 - C_k(x) / B_k)`` over the relaxed box of the
levels, with Adam-like steps on a batch of strictly feasible starts and ``mu``
annealed toward 0 (interior-point style), then rounds to valid levels and repairs
greedily until every budget holds exactly (see ``search.repair``).

Assumptions the caller guarantees: costs are positive, differentiable on the box and
non-decreasing in every coordinate; the objective is differentiable. Costs are
called on float64 tensors, the objective on torch's default dtype.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from search.levels import Levels
from search.repair import CostFn, LevelGrid, MeanStdFn, Problem, fill, repair, round_tight

_F64 = torch.float64
_LR_DECAY = 0.2  # lr falls geometrically to this fraction by the last step


@dataclass
class SolveResult:
    """The best policy a search found, with its prediction and its costs."""

    x: np.ndarray  # encoded policy (D,), every coordinate on one of its levels
    mean: float
    std: float
    costs: dict[str, float]
    budgets: dict[str, float]
    feasible: bool
    seconds: float
    note: str = ""


def make_problem(
    mean_std: MeanStdFn,
    costs: Mapping[str, CostFn],
    budgets: Mapping[str, float],
    levels: Levels,
    fixed: np.ndarray | None = None,
    fixed_values: np.ndarray | None = None,
    risk: float = 0.0,
) -> Problem:
    """Validate the inputs of a search and bundle them (shared with the baselines)."""
    return Problem(mean_std, costs, budgets, LevelGrid(levels, fixed, fixed_values), risk)


def result(problem: Problem, idx: Tensor, started: float, note: str = "") -> SolveResult:
    """The ``SolveResult`` of one index row."""
    with torch.no_grad():
        x = problem.grid.values(idx[None])
        mean, std = problem.mean_std(x.to(problem.obj_dtype))
        costs = {k: float(fn(x).reshape(-1)[0]) for k, fn in problem.costs.items()}
    return SolveResult(
        x=x[0].numpy(),
        mean=float(mean.reshape(-1)[0]),
        std=float(std.reshape(-1)[0]),
        costs=costs,
        budgets=dict(problem.budgets),
        feasible=all(costs[k] <= b for k, b in problem.budgets.items()),
        seconds=time.perf_counter() - started,
        note=note,
    )


def floor_index(problem: Problem, floors: np.ndarray | None = None) -> Tensor:
    """The index row the search grows from: the lower corner, or else the first of
    ``floors`` (encoded policies, snapped to the grid) that fits every budget.

    With monotone costs the lower corner is the cheapest policy there is. A cost that is
    not monotone (ONNX Runtime latency: an input below 8 bits adds a requantization, a
    channel count off ORT's blocks a reorder) can make it dearer than a policy above it;
    the caller names such cheaper policies (a window's own centre, the lower corner at the
    top bits). None fitting: the lower corner (``corner_shortcut`` then says why)."""
    grid = problem.grid
    rows = [grid.lo_idx[None]]
    if floors is not None and len(floors):
        rows.append(grid.nearest_index(torch.as_tensor(np.atleast_2d(floors), dtype=_F64)))
    cand = torch.cat(rows)
    with torch.no_grad():
        ok = problem.feasible(cand)
    return cand[int(ok.nonzero()[0, 0])] if ok.any() else grid.lo_idx


def corner_shortcut(
    problem: Problem, started: float, base: Tensor | None = None
) -> SolveResult | None:
    """Raise if no policy fits (judged at ``base``, the floor index row; default the lower
    corner); the upper corner if every policy fits; else None."""
    grid = problem.grid
    low = grid.lower if base is None else grid.values(base[None])[0]
    with torch.no_grad():
        c_lo = problem.normalized_costs(low[None])[0]
        c_hi = problem.normalized_costs(grid.upper[None])[0]
    if (c_lo > 1.0).any():
        parts = [
            f"{k} {float(c_lo[i]) * b:.6g} (budget {b:.6g}{', too small' if c_lo[i] > 1 else ''})"
            for i, (k, b) in enumerate(problem.budgets.items())
        ]
        raise ValueError(f"no policy meets the budgets; smallest attainable: {', '.join(parts)}")
    if (c_hi <= 1.0).all():
        note = "budgets at or above the cost of the largest policy: returned the upper corner"
        return result(problem, grid.hi_idx, started, note)
    return None


def _scale_to_fit(
    problem: Problem, lower: Tensor, direction: Tensor, slack: float, iters: int = 30
) -> Tensor:
    """Per row, the largest s in [0, 1] with lower + s * direction leaving ``slack`` on
    every budget (bisection; monotone costs make it well defined)."""
    lo = torch.zeros(direction.shape[0], dtype=_F64)
    hi = torch.ones_like(lo)
    fits = (problem.normalized_costs(lower + direction) <= 1.0 - slack).all(dim=1)
    lo = torch.where(fits, hi, lo)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        ok = (problem.normalized_costs(lower + mid[:, None] * direction) <= 1.0 - slack).all(dim=1)
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok | fits, hi, mid)
    return lower + lo[:, None] * direction


def _starts(problem: Problem, base: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """Strictly feasible starts: the uniform point on the budget (less a margin) and
    jittered directions from ``base`` (the floor's values) scaled back inside the budgets."""
    grid = problem.grid
    span = grid.upper - base
    slack_lo = float((1.0 - problem.normalized_costs(base[None])).min())
    margin = min(0.02, 0.5 * slack_lo)
    jitter = 0.3 + 0.7 * torch.rand(n, grid.dim, generator=gen, dtype=_F64)
    jitter[0] = 1.0
    return _scale_to_fit(problem, base, jitter * span, margin)


def _grad(problem: Problem, x: Tensor, mu: float) -> tuple[Tensor, Tensor]:
    """Gradient of objective + mu * barrier at x, and the slacks (N, K) at x."""
    x = x.detach().requires_grad_(True)
    slack = 1.0 - problem.normalized_costs(x)
    barrier = torch.log(slack.clamp_min(1e-300)).sum()  # clamp: belt and braces only
    total = problem.objective(x).sum() + mu * barrier
    (g,) = torch.autograd.grad(total, x)
    return torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0), slack.detach()


def _mu_scale(problem: Problem, x: Tensor) -> float:
    """Barrier weight at which ``mu_rel`` roughly equals the relative slack left at a
    KKT point: |grad objective| / |grad normalized cost|, median over the starts."""
    x = x.detach().requires_grad_(True)
    g_obj = torch.autograd.grad(problem.objective(x).sum(), x)[0].norm(dim=1)
    x = x.detach().requires_grad_(True)
    g_c = torch.autograd.grad(problem.normalized_costs(x).sum(), x)[0].norm(dim=1)
    scale = float((g_obj / g_c.clamp_min(1e-30)).median())
    return scale if math.isfinite(scale) and scale > 0 else 1.0


def _backtrack(
    problem: Problem, x: Tensor, step: Tensor, slack: Tensor, halvings: int = 8
) -> tuple[Tensor, Tensor]:
    """Take ``step`` where it keeps at least a tenth of every slack (fraction to the
    boundary), halving it per row up to ``halvings`` times, else stay put."""
    alpha = torch.ones(x.shape[0], dtype=_F64)
    ok = torch.zeros(x.shape[0], dtype=torch.bool)
    for _ in range(halvings + 1):
        new_slack = 1.0 - problem.normalized_costs(x + alpha[:, None] * step)
        ok = ok | (new_slack >= 0.1 * slack).all(dim=1)
        if ok.all():
            break
        alpha = torch.where(ok, alpha, 0.5 * alpha)
    alpha = torch.where(ok, alpha, 0.0)
    return x + alpha[:, None] * step, ok


def _ascend(problem: Problem, x: Tensor, steps: int, lr: float, mu: tuple[float, float]) -> Tensor:
    """Adam-like ascent of the barrier objective with geometric mu and lr decay."""
    lo, hi = problem.grid.lower, problem.grid.upper
    scale = _mu_scale(problem, x)
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    b1, b2 = 0.9, 0.99
    for t in range(steps):
        frac = t / max(steps - 1, 1)
        mu_t = scale * mu[0] * (mu[1] / mu[0]) ** frac
        lr_t = lr * _LR_DECAY**frac
        g, slack = _grad(problem, x, mu_t)
        with torch.no_grad():
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            # Bias-corrected Adam step: lr * m_hat / sqrt(v_hat), folded into one factor.
            c = lr_t * math.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
            target = torch.minimum(torch.maximum(x + c * m / (v.sqrt() + 1e-12), lo), hi)
            x, moved = _backtrack(problem, x, target - x, slack)
            m.mul_(moved[:, None])  # a blocked row stops pushing into the wall
    return x


def _discretize(problem: Problem, x: Tensor, keep: int, do_fill: bool) -> Tensor:
    """Candidate index rows: threshold rounding of every start and nearest rounding of
    the ``keep`` best relaxed ones, repaired and filled; returns the feasible ones."""
    grid = problem.grid
    with torch.no_grad():
        tight = repair(problem, round_tight(problem, x))  # repair: floor's 1e-9 tolerance
        k = min(keep, x.shape[0])
        top_tight = problem.objective(grid.values(tight)).topk(k).indices
        top_relaxed = problem.objective(x).topk(k).indices
        near = repair(problem, grid.nearest_index(x[top_relaxed]))
        cand = torch.unique(torch.cat([tight[top_tight], near]), dim=0)
        if do_fill:
            cand = fill(problem, cand)
        return cand[problem.feasible(cand)]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads, then restore; ``None`` changes nothing."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def barrier_ascent(
    mean_std: MeanStdFn,
    costs: Mapping[str, CostFn],
    budgets: Mapping[str, float],
    levels: Levels,
    *,
    fixed: np.ndarray | None = None,
    fixed_values: np.ndarray | None = None,
    starts: int = 32,
    steps: int = 100,
    lr: float = 0.1,
    mu_start: float = 0.03,
    mu_end: float = 1e-2,
    risk: float = 0.0,
    keep: int = 4,
    do_fill: bool = True,
    seed: int = 0,
    threads: int | None = 1,
    floors: np.ndarray | None = None,
) -> SolveResult:
    """Best policy under every budget by barrier gradient ascent, rounding and repair.

    ``mu_start``/``mu_end`` are relative: roughly the fraction of each budget the
    barrier leaves unused at the first and last step. ``risk`` > 0 maximizes
    mean - risk * std instead of the mean. ``fixed`` (bool mask) freezes dimensions
    at ``fixed_values``, e.g. every bit-width at 8. ``threads``: torch intra-op threads
    during the solve, restored after (None: leave as is). One is the default because
    these batches are too small to gain from more, and on a busy machine more threads
    made a solve 5-50x slower (spinning workers wait for descheduled ones). ``floors``:
    policies that may fit where the lower corner does not (``floor_index``).
    """
    started = time.perf_counter()
    with torch_threads(threads):
        problem = make_problem(mean_std, costs, budgets, levels, fixed, fixed_values, risk)
        base = floor_index(problem, floors)
        early = corner_shortcut(problem, started, base)
        if early is not None:
            return early
        cand = _candidates(
            problem, base, starts, steps, lr, (mu_start, mu_end), keep, do_fill, seed
        )
        with torch.no_grad():
            best = cand[problem.objective(problem.grid.values(cand)).argmax()]
        return result(problem, best, started)


def _candidates(
    problem: Problem,
    base: Tensor,
    starts: int,
    steps: int,
    lr: float,
    mu: tuple[float, float],
    keep: int,
    do_fill: bool,
    seed: int,
) -> Tensor:
    """Feasible index rows to choose the answer from (never empty); ``base`` is the floor
    index row, which fits."""
    low = problem.grid.values(base[None])
    with torch.no_grad():
        tight = (problem.normalized_costs(low) >= 1.0).any()
    if tight:  # a budget equals its minimum: no interior; grow the floor instead
        return fill(problem, base[None])
    with torch.no_grad():
        x0 = _starts(problem, low[0], starts, torch.Generator().manual_seed(seed))
    x = _ascend(problem, x0, steps, lr, mu)
    cand = _discretize(problem, x, keep, do_fill)
    # Unreachable while costs are monotone (rounding down is feasible); the floor is safe.
    return cand if cand.shape[0] else base[None]
