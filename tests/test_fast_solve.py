"""``solve`` without ``--refine``: the best-rated policy within one level of the best measured
policy and of the best-rated global-ranking allocations (``seernet.steps.solve``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import seernet.steps.solve as solve
from search.levels import Levels
from seernet.space.policy import SpaceChoices
from seernet.steps.context import RunContext, record_space
from seernet.steps.solve import BudgetSet, solve_fast
from seernet.workspace.artifacts import RANKING_NAME
from seernet.workspace.folder import Workspace


class Monotone:
    """A predictor: accuracy rises with every coordinate, with a fixed std."""

    def mean_std_torch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = 50.0 + 40.0 * x.mean(dim=-1)
        return mean, torch.full_like(mean, 1.0)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> RunContext:
    ws = Workspace(tmp_path_factory.mktemp("w"))
    c = RunContext(ws, ws.open({}), torch.device("cpu"))
    record_space(c, SpaceChoices())
    return c


@pytest.fixture(autouse=True)
def coarse_ranking(monkeypatch):
    """Four global pruning ratios instead of 76: the same code, a test-sized cost."""
    monkeypatch.setattr(solve, "RANKING_STEP", 0.25)


def steps_to(x: np.ndarray, centers: list[np.ndarray], grid: Levels) -> int:
    return min(int(np.abs(grid.to_index(x) - grid.to_index(c)).max()) for c in centers)


def test_ranking_table_is_cached_per_workspace(ctx, monkeypatch):
    import seernet.compression.global_ranking as gr

    ctx.ws.path(RANKING_NAME).unlink(missing_ok=True)
    calls = []
    real = gr.kept_counts
    monkeypatch.setattr(gr, "kept_counts", lambda *a: calls.append(a[2]) or real(*a))
    table = solve.ranking_table(ctx)
    assert calls == [0.0, 0.25, 0.5, 0.75] and table.shape == (4, ctx.space.n_groups)
    assert np.all(np.diff(table, axis=0) <= 0)  # a higher ratio keeps no more channels
    assert np.array_equal(solve.ranking_table(ctx), table) and len(calls) == 4  # read, not made
    path = ctx.ws.path(RANKING_NAME)
    path.write_text(json.dumps({**json.loads(path.read_text()), "weights": "other.pt"}))
    solve.ranking_table(ctx)
    assert len(calls) == 8  # another model's counts are made again


def test_ranking_centers_fit_the_budgets_and_the_frozen_bits(ctx):
    budgets = {"flops": 0.5 * ctx.costs.unpruned()["flops"]}
    fixed, values = ctx.space.bits_mask(8)
    found = solve.ranking_centers(ctx, Monotone(), budgets, fixed, values)
    assert len(found) == 1  # frozen at 8 bits: only the 8-bit ranking agrees
    assert solve.fits(ctx, np.stack(found), budgets, fixed, values).all()
    budgets["bitops"] = 16 * budgets["flops"]
    found = solve.ranking_centers(ctx, Monotone(), budgets, None, None)
    assert 1 <= len(found) <= solve.RANKING_CENTERS
    assert solve.fits(ctx, np.stack(found), budgets, None, None).all()


def test_fast_solve_stays_within_one_level_of_a_centre(ctx):
    budget = {"flops": 0.5 * ctx.costs.unpruned()["flops"]}
    fixed, values = ctx.space.bits_mask(8)
    X = np.stack([ctx.space.encode(ctx.space.uniform_policy(f, 8)) for f in (0.3, 0.5, 1.0)])
    y = np.array([70.0, 80.0, 92.0])  # the unpruned one does not fit
    res = solve_fast(ctx, Monotone(), BudgetSet(budget, "b", {}), fixed, values, (X, y))
    centers = solve.trust_centers(ctx, X, y, budget, fixed, values)
    centers += solve.ranking_centers(ctx, Monotone(), budget, fixed, values)
    assert np.array_equal(centers[0], X[1])  # the best measured policy that fits
    grid = Levels(ctx.space.levels())
    assert steps_to(res.x, centers, grid) <= solve.TRUST_RADIUS
    assert res.feasible and "whole space" not in res.note


def test_fast_solve_without_a_fitting_measurement_starts_from_the_ranking(ctx):
    budget = {"flops": 0.5 * ctx.costs.unpruned()["flops"]}
    X = ctx.space.encode(ctx.space.full_policy(8))[None]
    res = solve_fast(ctx, Monotone(), BudgetSet(budget, "b", {}), None, None, (X, np.array([92.0])))
    centers = solve.ranking_centers(ctx, Monotone(), budget, None, None)
    assert steps_to(res.x, centers, Levels(ctx.space.levels())) <= solve.TRUST_RADIUS
    assert res.feasible and "whole space" not in res.note


def test_fast_solve_without_any_centre_searches_everywhere(ctx, monkeypatch):
    monkeypatch.setattr(solve, "RANKING_CENTERS", 0)
    budget = {"flops": 0.5 * ctx.costs.unpruned()["flops"]}
    X = ctx.space.encode(ctx.space.full_policy(8))[None]
    res = solve_fast(ctx, Monotone(), BudgetSet(budget, "b", {}), None, None, (X, np.array([92.0])))
    assert res.feasible and "whole space" in res.note
