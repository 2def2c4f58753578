"""Where the solver will land: its answers at budgets across the range, and their neighbours.

The solver (``search.solver.barrier_ascent``) only ever returns policies on the budget
boundary that the predictor rates best, so those are the policies whose accuracy the
predictor must get right. Each active round solves on that round's predictor at a few
budgets spread over the FLOPs range, and offers the answers and their near neighbours
(one- or two-coordinate moves of one level that keep the answer's budgets) as candidates
to measure.

Assumptions the caller guarantees (as for the solver): ``solver_costs["flops"]`` exists;
every cost maps a float64 (N, D) tensor of encoded policies to (N,) positive costs,
non-decreasing in every coordinate; the top level of every coordinate in ``bit_dims`` is
the highest bit-width. A BitOPs budget is the FLOPs budget times a factor (64 = 8-bit
weights x 8-bit activations, so 64 never binds and 4 is as costly as uniform 2-bit).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from search.levels import Levels
from search.repair import CostFn, MeanStdFn
from search.solver import barrier_ascent

SolverCosts = Mapping[str, CostFn]
SeedFor = Callable[[int], int]  # solve number -> its solver seed


@dataclass(frozen=True)
class LandingConfig:
    """How many budgets the landing acquisition solves at per round, and how."""

    budgets: int = 8  # solves per round, their FLOPs budgets stratified over the range
    risk: float = 1.0  # the solver maximizes mean - risk * std (a lower confidence bound)
    bitops_factors: tuple[float, ...] = (64.0, 16.0, 9.0, 4.0)  # BitOPs budget / FLOPs budget
    low: float = 1.1  # smallest FLOPs budget, as a multiple of the smallest attainable
    high: float = 0.95  # largest FLOPs budget, as a fraction of the unpruned FLOPs
    starts: int = 16  # solver starts per solve (the solver's own default is 32)
    steps: int = 60  # solver steps per solve (default 100): a round stays a few seconds
    pairs: float = 2.0  # two-coordinate moves drawn per answer, per dimension

    def __post_init__(self) -> None:
        if self.budgets < 1 or self.starts < 1 or self.steps < 1:
            raise ValueError("landing budgets, starts and steps must be >= 1")
        if self.risk < 0 or self.pairs < 0:
            raise ValueError("landing risk and pairs must be >= 0")
        if any(not f > 0 for f in self.bitops_factors):
            raise ValueError(f"bitops_factors must be positive, got {self.bitops_factors}")
        if not (self.low >= 1.0 and 0.0 < self.high <= 1.0):
            raise ValueError("landing low must be >= 1 and high in (0, 1]")


@dataclass(frozen=True)
class Budget:
    """One solve's budgets, and whether its bit-widths are frozen at the highest."""

    budgets: dict[str, float]
    top_bits: bool


@dataclass(frozen=True)
class Landing:
    """One round's solver answers (one per budget, may repeat) and their neighbours."""

    answers: np.ndarray  # (A, D) encoded policies, each within its budgets
    budgets: tuple[Budget, ...]  # (A,) what each answer was solved for
    neighbours: np.ndarray  # (M, D) each within its answer's budgets (may repeat across answers)
    origin: np.ndarray  # (M,) index of the answer each neighbour moved from
    seconds: float  # time the solves took


def check_solver_costs(solver_costs: SolverCosts) -> None:
    """Raise unless the costs name what the landing acquisition budgets."""
    if "flops" not in solver_costs:
        raise ValueError(
            f"the landing acquisition budgets FLOPs: solver_costs needs a 'flops' entry, "
            f"got {sorted(solver_costs)}"
        )


def _frozen(levels: Levels, bit_dims: np.ndarray, top_bits: bool) -> tuple[np.ndarray, np.ndarray]:
    """Index bounds (lo, hi) per dimension, the bit dimensions pinned at their top level."""
    lo, hi = np.zeros(levels.dim, dtype=np.int64), levels.sizes - 1
    if top_bits:
        lo = lo.copy()
        lo[bit_dims] = hi[bit_dims]
    return lo, hi


def _cost(fn: CostFn, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return fn(torch.as_tensor(np.atleast_2d(x), dtype=torch.float64)).numpy().reshape(-1)


def landing_budgets(
    solver_costs: SolverCosts,
    levels: Levels,
    bit_dims: np.ndarray,
    config: LandingConfig,
    rng: np.random.Generator,
) -> list[Budget]:
    """``config.budgets`` budgets: FLOPs stratified over [low x smallest, high x unpruned],
    each with bits at the top or a BitOPs budget of one of ``config.bitops_factors``."""
    flops = solver_costs["flops"]
    modes: list[float | None] = [None]  # None: bits frozen at the highest bit-width
    if "bitops" in solver_costs:
        modes += list(config.bitops_factors)
    n = config.budgets
    f_lo = config.low * float(_cost(flops, levels.lower)[0])
    f_hi = max(config.high * float(_cost(flops, levels.upper)[0]), f_lo)
    fractions = (rng.permutation(n) + rng.random(n)) / n
    picks = rng.permutation((rng.integers(len(modes)) + np.arange(n)) % len(modes))
    out = []
    for u, m in zip(fractions.tolist(), picks.tolist(), strict=True):
        factor = modes[m]
        lower = levels.from_index(_frozen(levels, bit_dims, factor is None)[0])
        # Never below what the solve can attain (a frozen or costly bit-width raises it).
        f = max(f_lo + u * (f_hi - f_lo), config.low * float(_cost(flops, lower)[0]))
        budgets = {"flops": f}
        if factor is not None:
            b_min = config.low * float(_cost(solver_costs["bitops"], lower)[0])
            budgets["bitops"] = max(factor * f, b_min)
        out.append(Budget(budgets, factor is None))
    return out


def near_neighbours(
    idx: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_pairs: int, rng: np.random.Generator
) -> np.ndarray:
    """Every one-level move of one coordinate of ``idx`` (D,) and ``n_pairs`` random moves
    of two coordinates, within the index bounds [lo, hi]; distinct, (M, D)."""
    movable = np.flatnonzero(hi > lo)
    m = movable.size
    if m == 0:
        return np.zeros((0, idx.size), dtype=np.int64)
    eye = np.eye(idx.size, dtype=np.int64)[movable]
    moves = [eye, -eye]
    if m >= 2 and n_pairs > 0:
        d1 = rng.integers(m, size=n_pairs)
        d2 = (d1 + rng.integers(1, m, size=n_pairs)) % m  # a second, different coordinate
        s = rng.choice(np.array([-1, 1]), size=(n_pairs, 2))
        moves.append(s[:, :1] * eye[d1] + s[:, 1:] * eye[d2])
    rows = idx[None] + np.concatenate(moves)
    rows = rows[np.all((rows >= lo) & (rows <= hi), axis=1)]
    _, first = np.unique(rows, axis=0, return_index=True)
    return rows[np.sort(first)]


def _within(solver_costs: SolverCosts, budgets: Mapping[str, float], x: np.ndarray) -> np.ndarray:
    """Which rows of ``x`` meet every budget exactly."""
    ok = np.ones(len(x), dtype=bool)
    for k, b in budgets.items():
        ok &= _cost(solver_costs[k], x) <= b
    return ok


def solve_landing(
    mean_std: MeanStdFn,
    solver_costs: SolverCosts,
    levels: Levels,
    bit_dims: Sequence[int] | np.ndarray,
    config: LandingConfig,
    rng: np.random.Generator,
    seed_for: SeedFor,
) -> Landing:
    """Solve at ``landing_budgets`` and collect each answer's near neighbours."""
    check_solver_costs(solver_costs)
    started = time.perf_counter()
    bit_dims = np.asarray(bit_dims, dtype=np.int64).reshape(-1)
    plan = landing_budgets(solver_costs, levels, bit_dims, config, rng)
    answers, rows, origin = [], [], []
    top = levels.upper
    for i, b in enumerate(plan):
        fixed = np.zeros(levels.dim, dtype=bool)
        if b.top_bits:
            fixed[bit_dims] = True
        costs = {k: solver_costs[k] for k in b.budgets}
        res = barrier_ascent(
            mean_std, costs, b.budgets, levels, fixed=fixed if fixed.any() else None,
            fixed_values=top, starts=config.starts, steps=config.steps, risk=config.risk,
            seed=seed_for(i),
        )  # fmt: skip
        answers.append(res.x)
        lo, hi = _frozen(levels, bit_dims, b.top_bits)
        n_pairs = int(round(config.pairs * levels.dim))
        near = levels.from_index(near_neighbours(levels.to_index(res.x), lo, hi, n_pairs, rng))
        near = near[_within(solver_costs, b.budgets, near)]
        rows.append(near)
        origin.append(np.full(len(near), i, dtype=np.int64))
    return Landing(
        answers=np.stack(answers),
        budgets=tuple(plan),
        neighbours=np.concatenate(rows),
        origin=np.concatenate(origin),
        seconds=time.perf_counter() - started,
    )
