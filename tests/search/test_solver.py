"""Barrier ascent, rounding and greedy repair on toy problems."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from search.levels import Levels
from search.repair import fill, repair
from search.solver import barrier_ascent, make_problem


@pytest.mark.parametrize("frac", [0.15, 0.5, 0.8])
def test_quadratic_lands_on_kkt_optimum(quadratic, frac):
    lo = quadratic.corner_costs(quadratic.levels.lower)["flops"]
    hi = quadratic.corner_costs(quadratic.levels.upper)["flops"]
    budget = lo + frac * (hi - lo)
    x_star, best = quadratic.optimum(budget)
    r = barrier_ascent(quadratic.mean_std, quadratic.costs, {"flops": budget}, quadratic.levels)
    quadratic.check(r, {"flops": budget})
    assert r.mean >= best - 2e-3 * abs(best)
    assert np.abs(r.x - x_star).max() <= 0.1


@settings(max_examples=25, deadline=None)
@given(
    f_flops=st.floats(0.0, 1.1),
    f_bitops=st.floats(0.0, 1.1),
    which=st.sampled_from([("flops",), ("bitops",), ("flops", "bitops")]),
)
def test_every_budget_holds_exactly_on_valid_levels(mlp, f_flops, f_bitops, which):
    lo = mlp.corner_costs(mlp.levels.lower)
    hi = mlp.corner_costs(mlp.levels.upper)
    frac = {"flops": f_flops, "bitops": f_bitops}
    budgets = {k: lo[k] + frac[k] * (hi[k] - lo[k]) for k in which}
    r = barrier_ascent(mlp.mean_std, mlp.costs, budgets, mlp.levels, steps=40)
    mlp.check(r, budgets)
    assert r.budgets == budgets and set(r.costs) == {"flops", "bitops"}


def test_frozen_dims_stay_frozen(mlp):
    eight_bits = np.ones(mlp.levels.dim)
    lo = mlp.corner_costs(np.where(mlp.bits, 1.0, mlp.levels.lower))["bitops"]
    hi = mlp.corner_costs(mlp.levels.upper)["bitops"]
    budgets = {"bitops": lo + 0.3 * (hi - lo)}
    r = barrier_ascent(
        mlp.mean_std, mlp.costs, budgets, mlp.levels, fixed=mlp.bits, fixed_values=eight_bits
    )
    mlp.check(r, budgets)
    assert np.all(r.x[mlp.bits] == 1.0)
    assert np.any(r.x[~mlp.bits] < 1.0)


def test_frozen_dims_count_in_the_minimum(mlp):
    lo_free = mlp.corner_costs(mlp.levels.lower)["bitops"]
    with pytest.raises(ValueError, match="smallest attainable"):
        barrier_ascent(
            mlp.mean_std,
            mlp.costs,
            {"bitops": 2 * lo_free},
            mlp.levels,
            fixed=mlp.bits,
            fixed_values=np.ones(mlp.levels.dim),
        )


def test_fixed_value_off_the_levels_is_rejected(mlp):
    with pytest.raises(ValueError, match="not on their levels"):
        barrier_ascent(
            mlp.mean_std,
            mlp.costs,
            {"flops": 5.0},
            mlp.levels,
            fixed=mlp.bits,
            fixed_values=np.full(mlp.levels.dim, 0.5),
        )


@pytest.mark.parametrize("eps", [0.0, 1e-12, 1e-9, 1e-6, 1e-3])
def test_barrier_is_finite_and_strictly_inside_near_the_minimum(mlp, eps):
    lo = mlp.corner_costs(mlp.levels.lower)
    budgets = {k: v * (1 + eps) for k, v in lo.items()}
    inside = []

    def spy(name):
        def cost(x):
            y = mlp.costs[name](x)
            assert torch.isfinite(x).all() and torch.isfinite(y).all()
            if x.requires_grad:  # a point where the barrier and its gradient are taken
                inside.append(bool((y < budgets[name]).all()))
            return y

        return cost

    def mean_std(x):
        assert torch.isfinite(x).all()
        mean, std = mlp.mean_std(x)
        assert torch.isfinite(mean).all() and torch.isfinite(std).all()
        return mean, std

    costs = {k: spy(k) for k in mlp.costs}
    r = barrier_ascent(mean_std, costs, budgets, mlp.levels, steps=40)
    mlp.check(r, budgets)
    assert all(inside)


def test_budget_below_minimum_names_the_minimum(mlp):
    lo = mlp.corner_costs(mlp.levels.lower)
    budgets = {"flops": lo["flops"] * 0.9, "bitops": lo["bitops"] * 10}
    with pytest.raises(ValueError) as err:
        barrier_ascent(mlp.mean_std, mlp.costs, budgets, mlp.levels)
    assert f"{lo['flops']:.6g}" in str(err.value) and f"{lo['bitops']:.6g}" in str(err.value)


def test_budget_above_maximum_returns_upper_corner(mlp):
    hi = mlp.corner_costs(mlp.levels.upper)
    budgets = {k: v * 1.5 for k, v in hi.items()}
    r = barrier_ascent(mlp.mean_std, mlp.costs, budgets, mlp.levels)
    assert r.feasible and "upper corner" in r.note
    np.testing.assert_array_equal(r.x, mlp.levels.upper)


def test_same_seed_same_policy(mlp):
    budgets = {"bitops": 100.0}
    a = barrier_ascent(mlp.mean_std, mlp.costs, budgets, mlp.levels, steps=30, seed=3)
    b = barrier_ascent(mlp.mean_std, mlp.costs, budgets, mlp.levels, steps=30, seed=3)
    np.testing.assert_array_equal(a.x, b.x)


def test_unknown_budget_is_rejected(mlp):
    with pytest.raises(ValueError, match="without a cost function"):
        barrier_ascent(mlp.mean_std, mlp.costs, {"latency": 1.0}, mlp.levels)


def test_repair_steps_down_the_cheapest_loss_per_cost_saved():
    def mean_std(x):
        mean = x[:, 0] + 10 * x[:, 1]
        return mean, torch.zeros_like(mean)

    levels = Levels([[0.0, 0.5, 1.0]] * 2)
    problem = make_problem(mean_std, {"c": lambda x: 1 + x.sum(1)}, {"c": 2.5}, levels)
    fixed = repair(problem, torch.tensor([[2, 2]]))
    assert fixed.tolist() == [[1, 2]]


def test_repair_then_fill_stays_feasible_and_improves(mlp):
    problem = make_problem(mlp.mean_std, mlp.costs, {"flops": 5.0, "bitops": 150.0}, mlp.levels)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 4, (16, mlp.levels.dim), generator=gen)
    repaired = repair(problem, idx)
    assert problem.feasible(repaired).all()
    filled = fill(problem, repaired)
    assert problem.feasible(filled).all()
    values = problem.grid.values
    with torch.no_grad():
        assert (problem.objective(values(filled)) >= problem.objective(values(repaired))).all()


def test_thread_setting_is_restored(mlp):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        barrier_ascent(mlp.mean_std, mlp.costs, {"flops": 5.0}, mlp.levels, steps=5, threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@settings(max_examples=50, deadline=None)
@given(data=st.data(), radius=st.integers(0, 3))
def test_window_keeps_the_center_and_only_its_neighbours(data, radius):
    sizes = data.draw(st.lists(st.integers(1, 7), min_size=1, max_size=6))
    levels = Levels([np.linspace(0.1, 1.0, n) for n in sizes])
    idx = np.array([data.draw(st.integers(0, n - 1)) for n in sizes])
    center = levels.from_index(idx)
    win = levels.window(center, radius)
    for d in range(len(sizes)):
        want = levels.values[d][max(0, idx[d] - radius) : idx[d] + radius + 1]
        np.testing.assert_array_equal(win.values[d], want)
        assert center[d] in win.values[d]


def test_a_solve_inside_a_window_stays_inside_it(mlp):
    center = mlp.levels.from_index(mlp.levels.sizes // 2)
    budgets = {"flops": mlp.corner_costs(center)["flops"]}
    win = mlp.levels.window(center, 1)
    r = barrier_ascent(mlp.mean_std, mlp.costs, budgets, win, steps=40)
    mlp.check(r, budgets)
    steps = np.abs(mlp.levels.to_index(r.x) - mlp.levels.to_index(center))
    assert steps.max() <= 1


def test_a_cost_dearer_at_the_lower_corner_grows_from_a_floor_that_fits():
    """A cost that is not monotone (ORT latency: low bits add requantization) can make the
    lower corner dearer than a policy above it; named as a floor, that policy is where the
    search starts, and every answer still meets the budget exactly."""
    levels = Levels([np.linspace(0, 1, 5)] * 4)

    def latency(x):  # dims 0-1 shrink it; dims 2-3 ("bits") cost extra below their top
        return 1.0 + x[:, 0] + x[:, 1] + 0.8 * ((1.0 - x[:, 2]) + (1.0 - x[:, 3]))

    def mean_std(x):
        mean = (x * torch.tensor([1.0, 2.0, 0.5, 0.5], dtype=x.dtype)).sum(1)
        return mean, torch.zeros_like(mean)

    budget = {"latency": 2.0}
    lower_bits_top = np.array([0.0, 0.0, 1.0, 1.0])
    assert (
        latency(torch.zeros(1, 4)).item()
        > 2.0
        >= latency(torch.as_tensor(lower_bits_top)[None]).item()
    )
    with pytest.raises(ValueError, match="smallest attainable"):
        barrier_ascent(mean_std, {"latency": latency}, budget, levels)
    r = barrier_ascent(mean_std, {"latency": latency}, budget, levels, floors=lower_bits_top[None])
    assert latency(torch.as_tensor(r.x)[None]).item() <= 2.0 + 1e-9
    assert r.x[1] == 1.0 and r.x[0] == 0.0  # the budget goes to the better channel dim
