"""The bit-allocation ILP against brute force on toy problems."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from search.bit_allocation import allocate, total


def brute_force(s: np.ndarray, costs: dict, budgets: dict) -> float | None:
    """Least total sensitivity over every allowed, feasible assignment (None: none is)."""
    best = None
    for choice in itertools.product(range(s.shape[1]), repeat=s.shape[0]):
        c = np.array(choice)
        if not np.isfinite(s[np.arange(len(c)), c]).all():
            continue
        if all(total(costs[k], c) <= b for k, b in budgets.items()):
            v = total(s, c)
            best = v if best is None else min(best, v)
    return best


def toy(seed: int, layers: int = 5, choices: int = 4) -> tuple[np.ndarray, dict]:
    """Sensitivity falls and costs rise with the choice index, like bits going up."""
    rng = np.random.default_rng(seed)
    s = np.sort(rng.uniform(0, 1, (layers, choices)), axis=1)[:, ::-1] * rng.uniform(
        0.1, 10, (layers, 1)
    )
    macs = rng.uniform(1, 5, (layers, 1))
    bits = np.array([2.0, 3.0, 4.0, 8.0])[:choices]
    return s, {"bitops": macs * bits * bits, "size": macs * bits / 8}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("frac", [0.1, 0.35, 0.7])
def test_matches_brute_force_one_budget(seed, frac):
    s, costs = toy(seed)
    lo, hi = costs["bitops"].min(1).sum(), costs["bitops"].max(1).sum()
    budgets = {"bitops": lo + frac * (hi - lo)}
    choice = allocate(s, {"bitops": costs["bitops"]}, budgets)
    assert total(costs["bitops"], choice) <= budgets["bitops"]
    assert total(s, choice) == pytest.approx(brute_force(s, costs, budgets), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_two_budgets_and_masked_choices(seed):
    s, costs = toy(seed)
    s[0, 3] = np.inf  # layer 0 may not take its largest choice
    s[2, 0] = np.inf  # layer 2 may not take its smallest
    budgets = {k: 0.5 * (c.min(1).sum() + c.max(1).sum()) for k, c in costs.items()}
    budgets["size"] *= 0.8
    choice = allocate(s, costs, budgets)
    assert choice[0] != 3 and choice[2] != 0
    for k, b in budgets.items():
        assert total(costs[k], choice) <= b
    assert total(s, choice) == pytest.approx(brute_force(s, costs, budgets), rel=1e-9)


def test_generous_budget_takes_least_sensitive_choice():
    s, costs = toy(0)
    choice = allocate(s, {"bitops": costs["bitops"]}, {"bitops": 1e12})
    np.testing.assert_array_equal(choice, s.argmin(1))


def test_impossible_budget_is_a_clear_error():
    s, costs = toy(1)
    with pytest.raises(ValueError, match="no allocation meets"):
        allocate(s, {"bitops": costs["bitops"]}, {"bitops": 0.5 * costs["bitops"].min(1).sum()})


def test_mismatched_inputs_are_rejected():
    s, costs = toy(2)
    with pytest.raises(ValueError, match="same resources"):
        allocate(s, {"bitops": costs["bitops"]}, {"size": 1.0})
    with pytest.raises(ValueError, match="shape"):
        allocate(s, {"bitops": costs["bitops"][:, :2]}, {"bitops": 1e9})


def test_tiny_sensitivity_differences_are_not_lost_to_solver_tolerance():
    """Layers whose sensitivities are 1e-9 of the largest still take their best allowed choice."""
    s, costs = toy(3)
    s[1:] *= 1e-9
    # everything fits, so every layer should take its least sensitive choice
    budget = costs["bitops"].max(1).sum() * (1 + 1e-12)
    choice = allocate(s, {"bitops": costs["bitops"]}, {"bitops": budget})
    np.testing.assert_array_equal(choice, s.argmin(1))
    assert total(costs["bitops"], choice) <= budget


def test_budget_equal_to_the_cheapest_allocation_is_met_exactly():
    s, costs = toy(4)
    cheapest = costs["size"].argmin(1)
    choice = allocate(s, {"size": costs["size"]}, {"size": total(costs["size"], cheapest)})
    np.testing.assert_array_equal(choice, cheapest)
