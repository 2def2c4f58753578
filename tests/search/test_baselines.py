"""Genetic and random search baselines on toy problems."""

from __future__ import annotations

import random

import numpy as np
import pytest

from search.baselines import genetic_search, random_search
from search.repair import LevelGrid
from search.sampler import scaled_indices
from search.solver import barrier_ascent

FAST_GA = {"population": 24, "generations": 15}


def _budgets(toy, f_flops: float, f_bitops: float) -> dict[str, float]:
    lo, hi = toy.corner_costs(toy.levels.lower), toy.corner_costs(toy.levels.upper)
    frac = {"flops": f_flops, "bitops": f_bitops}
    return {k: lo[k] + frac[k] * (hi[k] - lo[k]) for k in frac}


@pytest.mark.parametrize("fracs", [(0.0, 1.0), (0.3, 0.1), (0.7, 0.5), (1e-6, 1e-6)])
def test_ga_and_random_meet_every_budget(mlp, fracs):
    budgets = _budgets(mlp, *fracs)
    ga = genetic_search(mlp.mean_std, mlp.costs, budgets, mlp.levels, **FAST_GA)
    rnd = random_search(mlp.mean_std, mlp.costs, budgets, mlp.levels, n=2000)
    mlp.check(ga, budgets)
    mlp.check(rnd, budgets)


def test_ga_keeps_frozen_dims(mlp):
    lo = mlp.corner_costs(np.where(mlp.bits, 1.0, mlp.levels.lower))["bitops"]
    budgets = {"bitops": 1.5 * lo}
    kw = {"fixed": mlp.bits, "fixed_values": np.ones(mlp.levels.dim)}
    ga = genetic_search(mlp.mean_std, mlp.costs, budgets, mlp.levels, **FAST_GA, **kw)
    rnd = random_search(mlp.mean_std, mlp.costs, budgets, mlp.levels, n=500, **kw)
    for r in (ga, rnd):
        mlp.check(r, budgets)
        assert np.all(r.x[mlp.bits] == 1.0)


def test_ga_is_seeded_and_leaves_global_random_alone(mlp):
    budgets = _budgets(mlp, 0.4, 0.2)
    random.seed(123)
    before = random.getstate()
    a = genetic_search(mlp.mean_std, mlp.costs, budgets, mlp.levels, seed=5, **FAST_GA)
    assert random.getstate() == before
    b = genetic_search(mlp.mean_std, mlp.costs, budgets, mlp.levels, seed=5, **FAST_GA)
    np.testing.assert_array_equal(a.x, b.x)


def test_ga_stops_on_seconds(mlp, monkeypatch):
    import search.baselines as ga_module

    # A clock that advances one second per reading, so the deadline, not this machine's
    # speed, decides how many generations run.
    ticks = iter(range(10**6))
    monkeypatch.setattr(ga_module.time, "perf_counter", lambda: float(next(ticks)))
    generations = []
    offspring = ga_module._offspring
    monkeypatch.setattr(ga_module, "_offspring", lambda *a: generations.append(1) or offspring(*a))
    budgets = _budgets(mlp, 0.4, 0.2)
    r = genetic_search(mlp.mean_std, mlp.costs, budgets, mlp.levels, generations=10**6, seconds=3.0)
    assert 1 <= len(generations) <= 3
    mlp.check(r, budgets)


def test_barrier_is_at_least_as_good_on_concave_toy(quadratic):
    lo = quadratic.corner_costs(quadratic.levels.lower)["flops"]
    hi = quadratic.corner_costs(quadratic.levels.upper)["flops"]
    budgets = {"flops": lo + 0.3 * (hi - lo)}
    args = (quadratic.mean_std, quadratic.costs, budgets, quadratic.levels)
    solver = barrier_ascent(*args)
    ga = genetic_search(*args, **FAST_GA)
    rnd = random_search(*args, n=2000)
    assert solver.mean >= ga.mean - 1e-9
    assert solver.mean >= rnd.mean - 1e-9


def test_corners_behave_like_the_solver(mlp):
    lo, hi = mlp.corner_costs(mlp.levels.lower), mlp.corner_costs(mlp.levels.upper)
    for search in (genetic_search, random_search):
        with pytest.raises(ValueError, match="smallest attainable"):
            search(mlp.mean_std, mlp.costs, {"flops": 0.5 * lo["flops"]}, mlp.levels)
        r = search(mlp.mean_std, mlp.costs, {"flops": 2 * hi["flops"]}, mlp.levels)
        assert "upper corner" in r.note
        np.testing.assert_array_equal(r.x, mlp.levels.upper)


def test_scaled_sampling_reaches_the_smallest_policy(mlp):
    # The baselines draw with the sampler's stratified sampler, inside the grid's window.
    grid = LevelGrid(mlp.levels)
    lo, hi = grid.lo_idx.numpy(), grid.hi_idx.numpy()
    idx = scaled_indices(lo, hi, 2000, np.random.default_rng(0))
    assert (idx >= 0).all() and (idx <= hi).all()
    assert (idx == 0).all(axis=1).sum() > 20  # tight budgets still get samples
    assert (idx == hi).all(axis=1).sum() > 20


def test_scaled_sampling_keeps_frozen_dims(mlp):
    grid = LevelGrid(mlp.levels, mlp.bits, np.full(mlp.levels.dim, 2 / 3))
    lo, hi = grid.lo_idx.numpy(), grid.hi_idx.numpy()
    idx = scaled_indices(lo, hi, 500, np.random.default_rng(1))
    assert (idx[:, mlp.bits] == 2).all()
    assert (idx[:, ~mlp.bits] >= lo[~mlp.bits]).all() and (idx <= hi).all()
    assert len(np.unique(idx[:, ~mlp.bits], axis=0)) > 20
