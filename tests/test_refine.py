"""``solve --refine``'s loop on a stand-in store and predictor: what is measured, in which
order, and which candidate is the answer (no model is trained here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seernet.space.policy import SpaceChoices
from seernet.steps.context import RunContext, record_space
from seernet.steps.refine_loop import Candidate, Refined, refine_budget
from seernet.steps.solve import BudgetSet
from seernet.workspace.folder import Workspace


class Monotone:
    """A predictor: accuracy rises with every coordinate, with a fixed std."""

    def mean_std_torch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = 50.0 + 40.0 * x.mean(dim=-1)
        return mean, torch.full_like(mean, 1.0)


class Store:
    """The two things refine reads from a SampleStore, kept in memory."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.encoded, self.accuracy = X, y

    def __len__(self) -> int:
        return len(self.accuracy)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> RunContext:
    ws = Workspace(tmp_path_factory.mktemp("w"))
    c = RunContext(ws, ws.open({}), torch.device("cpu"))
    record_space(c, SpaceChoices())
    return c


def run(ctx, store, truth, n, starts):
    def measure(x: np.ndarray) -> float:
        acc = truth(x)
        store.encoded = np.vstack([store.encoded, x[None]])
        store.accuracy = np.append(store.accuracy, acc)
        return acc

    bset = BudgetSet({"flops": 0.5 * ctx.costs.unpruned()["flops"]}, "b", {})
    fixed, values = ctx.space.bits_mask(8)
    return refine_budget(ctx, Monotone(), bset, fixed, values, n, measure, store,
                         lambda X, y: Monotone(), starts=starts)  # fmt: skip


def test_fast_answer_then_anchor_then_trust_region_within_one_level(ctx):
    from seernet.compression.global_ranking import global_ranking_policy

    bset = {"flops": 0.5 * ctx.costs.unpruned()["flops"]}
    anchor = ctx.space.encode(global_ranking_policy(ctx.model, ctx.space, ctx.costs, bset)[0])
    store = Store(np.empty((0, ctx.space.dim)), np.empty(0))
    out = run(ctx, store, lambda x: 80.0, 3, [(anchor, "global-ranking")])
    assert [c.source for c in out.candidates][:2] == ["solve", "global-ranking"]
    np.testing.assert_array_equal(out.candidates[1].x, anchor)
    assert out.evaluations == len(store.accuracy) <= 3
    levels = ctx.space.levels()
    first = out.candidates[0].x
    for c in out.candidates[2:]:
        steps = [abs(int(np.argmin(np.abs(np.asarray(lv) - a))) - int(np.argmin(np.abs(np.asarray(lv) - b))))
                 for lv, a, b in zip(levels, c.x, first, strict=True)]  # fmt: skip
        assert max(steps) <= 1
    for c in out.candidates:
        assert ctx.costs.of_policy(ctx.space.decode(c.x))["flops"] <= bset["flops"]
    # every measurement is the same (80): the first measured policy stays the answer
    assert out.best is out.candidates[0]


def test_an_anchor_the_predictor_rules_out_is_not_measured(ctx):
    low = ctx.space.encode(ctx.space.uniform_policy(0.25, 8))  # Monotone: about 62 +/- 1
    store = Store(np.empty((0, ctx.space.dim)), np.empty(0))
    out = run(ctx, store, lambda x: 85.0, 2, [(low, "global-ranking")])
    assert [c.source for c in out.candidates][0] == "solve"
    assert "global-ranking" not in [c.source for c in out.candidates]
    assert [s for s, _, _ in out.skipped] == ["global-ranking"]


def test_the_best_stored_sample_within_budget_is_a_candidate(ctx):
    full = ctx.space.encode(ctx.space.full_policy(8))
    small = ctx.space.encode(ctx.space.uniform_policy(0.25, 8))
    store = Store(np.stack([full, small]), np.array([92.0, 70.0]))  # full is over the budget
    out = run(ctx, store, lambda x: 60.0, 1, [])
    assert out.candidates[0].source == "store" and not out.candidates[0].new
    np.testing.assert_array_equal(out.candidates[0].x, small)
    assert out.best.measured == 70.0


def test_a_candidate_replaces_the_incumbent_only_beyond_the_margin():
    x = np.zeros(2)
    mk = lambda acc: Candidate(x, 0.0, 1.0, acc, True)  # noqa: E731
    assert Refined([mk(80.0), mk(80.4)], margin=0.5).best.measured == 80.0
    assert Refined([mk(80.0), mk(80.6)], margin=0.5).best.measured == 80.6
    assert Refined([mk(80.0), mk(80.6), mk(81.0)], margin=0.5).best.measured == 80.6


def test_refine_needs_one_evaluation(ctx):
    store = Store(np.empty((0, ctx.space.dim)), np.empty(0))
    with pytest.raises(ValueError, match="at least 1"):
        run(ctx, store, lambda x: 80.0, 0, [])


def test_anchor_activations_rise_only_where_no_budget_counts_them(ctx):
    from seernet.steps.budget_anchors import widest_activations

    four = ctx.space.full_policy(4)
    size = {"size": ctx.costs.of_policy(four)["size"]}
    raised = widest_activations(ctx, four, size)
    assert all(raised.bits[ly.name] == (4, 8) for ly in ctx.space.free_layers)
    bitops = {"bitops": ctx.costs.of_policy(four)["bitops"]}
    assert widest_activations(ctx, four, bitops) == four


def test_a_stored_anchor_is_listed_once(ctx):
    anchor = ctx.space.encode(ctx.space.uniform_policy(0.25, 8))
    store = Store(anchor[None], np.array([75.0]))
    out = run(ctx, store, lambda x: 60.0, 1, [(anchor, "global-ranking")])
    xs = [c.x.tobytes() for c in out.candidates]
    assert len(xs) == len(set(xs)) and out.candidates[0].source == "store"


def test_an_anchor_is_made_only_when_a_measurement_is_left(ctx):
    made = []

    def starts():  # HAWQ's anchor costs a Hessian: it must not be made for nothing
        for frac in (0.25, 0.5):
            made.append(frac)
            yield ctx.space.encode(ctx.space.uniform_policy(frac, 8)), "global-ranking"

    store = Store(np.empty((0, ctx.space.dim)), np.empty(0))
    # the fast answer takes the first measurement, the first anchor the second
    out = run(ctx, store, lambda x: 40.0, 2, starts())
    assert made == [0.25] and out.evaluations == 2


def test_hawq_anchor_only_under_one_bitops_or_size_budget(ctx, cheap_hessian):
    from seernet.steps.budget_anchors import hawq_anchor

    flops = 0.5 * ctx.costs.unpruned()["flops"]
    # bits are not budgeted (nothing to allocate), or a latency budget HAWQ does not model
    assert hawq_anchor(ctx, {"flops": flops}, {}) is None
    assert hawq_anchor(ctx, {"flops": flops, "latency": 1.0}, {}) is None
    assert hawq_anchor(ctx, {"bitops": 1e9, "size": 1e6}, {}) is None  # two bit budgets
    assert cheap_hessian == []  # refused before any Hessian is taken


def test_hawq_anchor_allocates_bits_on_the_global_rankings_channels(ctx, cheap_hessian):
    from seernet.compression.global_ranking import global_ranking_policy
    from seernet.steps.budget_anchors import anchors, hawq_anchor

    flops = 0.5 * ctx.costs.unpruned()["flops"]
    channels = global_ranking_policy(ctx.model, ctx.space, ctx.costs, {"flops": flops})[0].channels
    cache: dict = {}
    for k in (16, 9):
        budgets = {"flops": flops, "bitops": k * flops}
        pol = ctx.space.decode(hawq_anchor(ctx, budgets, cache))
        assert pol.channels == channels
        spent = ctx.costs.of_policy(pol)
        assert spent["flops"] <= flops and spent["bitops"] <= k * flops * (1 + 1e-9)
    assert len(cheap_hessian) == 1 and len(cache) == 1  # one Hessian for both BitOPs levels
    budgets = {"flops": flops, "bitops": 9 * flops}
    found = list(anchors(ctx, Monotone(), BudgetSet(budgets, "b", {}), None, None, cache))
    assert [s for _, s in found][-1] == "hawq" and len(cheap_hessian) == 1
    fixed, values = ctx.space.bits_mask(8)  # frozen at 8 bits: HAWQ's mixed policy does not fit
    assert "hawq" not in [
        s for _, s in anchors(ctx, Monotone(), BudgetSet(budgets, "b", {}), fixed, values, cache)
    ]
