"""Torch-Pruning's global ranking mapped to valid seernet policies within budgets."""

from __future__ import annotations

import pytest
import torch

from seernet.compression.global_ranking import global_ranking_policy, kept_counts, snapped
from seernet.models import create_model
from seernet.space.costs import CostModel
from seernet.space.graph import build_space


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = create_model("resnet20", 10, 1).eval()
    space = build_space(model, (1, 1, 28, 28))
    return model, space, CostModel(space)


@pytest.mark.parametrize("frac", [0.3, 0.5, 0.7])
def test_policy_is_valid_and_within_budget(setup, frac):
    model, space, costs = setup
    budget = frac * costs.unpruned()["flops"]
    policy, ratio = global_ranking_policy(model, space, costs, {"flops": budget})
    space.validate(policy)  # raises on a count that is not an allowed level
    assert costs.of_policy(policy)["flops"] <= budget
    assert 0.0 < ratio <= space.choices.max_prune
    assert all(b == (8, 8) for b in policy.bits.values())
    # the bisection returns a policy close to the budget, not any small one
    assert costs.of_policy(policy)["flops"] > 0.85 * budget


def test_counts_shrink_with_the_ratio_and_snap_up(setup):
    model, space, _ = setup
    none, some, more = (kept_counts(model, space, r) for r in (0.0, 0.3, 0.6))
    assert none == {g.name: g.channels for g in space.groups}
    assert all(more[g] <= some[g] <= none[g] for g in none)
    assert sum(more.values()) < sum(some.values()) < sum(none.values())
    pol = snapped(space, some, bits=4)
    for g in space.groups:
        assert pol.channels[g.name] in g.keep and pol.channels[g.name] >= some[g.name]


def test_budget_below_the_space_is_an_error(setup):
    model, space, costs = setup
    with pytest.raises(ValueError, match="cannot reach"):
        global_ranking_policy(model, space, costs, {"flops": 0.01 * costs.unpruned()["flops"]})


@pytest.mark.parametrize("bits", [4, 3])
def test_every_budget_holds_at_lower_bits(setup, bits):
    """FLOPs and BitOPs together: the ratio is bisected until both hold."""
    model, space, costs = setup
    full = costs.unpruned()
    budgets = {"flops": 0.5 * full["flops"], "bitops": 0.5 * full["flops"] * bits * bits}
    policy, _ = global_ranking_policy(model, space, costs, budgets, bits=bits)
    spent = costs.of_policy(policy)
    # the fixed 8-bit first and last layers make BitOPs the binding budget here
    assert spent["bitops"] <= budgets["bitops"] and spent["flops"] <= budgets["flops"]
    assert spent["bitops"] > 0.85 * budgets["bitops"]
    assert all(policy.bits[ly.name] == (bits, bits) for ly in space.free_layers)
