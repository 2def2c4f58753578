"""LeGR on toy groups: exact budgets on allowed counts, the affine ranking, aging evolution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.legr import (
    AffineParams,
    BudgetTooSmall,
    EvolutionConfig,
    GlobalRanking,
    aging_evolution,
    normalize_scores,
)

SIZES = (8, 16, 12, 32)
WEIGHTS = np.array([3.0, 1.0, 2.0, 0.5])  # cost of one kept channel, per group


def allowed(n: int) -> list[int]:
    """Like the space's levels: keep 100%, 87.5%, ... 25% (never fewer than 1)."""
    return sorted({max(1, round((1 - r) * n)) for r in np.arange(0, 0.76, 0.125)})


def cost(keep: np.ndarray) -> np.ndarray:
    """A FLOPs-like cost: linear terms plus a bilinear one between consecutive groups."""
    keep = np.asarray(keep, dtype=np.float64)
    return keep @ WEIGHTS + 0.05 * (keep[:, :-1] * keep[:, 1:]).sum(1)


@pytest.fixture(scope="module")
def ranking() -> GlobalRanking:
    rng = np.random.default_rng(0)
    scores = [rng.gamma(2.0, 1.0 + g, size=n) for g, n in enumerate(SIZES)]
    return GlobalRanking(scores, [allowed(n) for n in SIZES], cost)


def test_normalize_scores_unit_norm():
    out = normalize_scores([np.array([3.0, 4.0]), np.zeros(3)])
    assert np.allclose(out[0], [0.6, 0.8]) and np.array_equal(out[1], np.zeros(3))


@settings(max_examples=60, deadline=None)
@given(frac=st.floats(0.0, 1.2), seed=st.integers(0, 1000))
def test_budget_met_exactly_on_allowed_counts(ranking: GlobalRanking, frac: float, seed: int):
    lo, hi = float(cost(ranking.smallest[None])[0]), float(cost(ranking.largest[None])[0])
    budget = lo + frac * (hi - lo)
    rng = np.random.default_rng(seed)
    params = AffineParams(rng.uniform(0.05, 3.0, len(SIZES)), rng.normal(0, 0.2, len(SIZES)))
    keep = ranking.keep_counts(params, budget)
    assert float(cost(keep[None])[0]) <= budget
    assert all(int(k) in allowed(n) for k, n in zip(keep, SIZES, strict=True))
    # Nothing left to add: no single group can go one level up within the budget.
    for g, n in enumerate(SIZES):
        up = [a for a in allowed(n) if a > keep[g]]
        if up:
            bigger = keep.copy()
            bigger[g] = up[0]
            assert float(cost(bigger[None])[0]) > budget


def test_budget_below_smallest_is_refused(ranking: GlobalRanking):
    smallest = float(cost(ranking.smallest[None])[0])
    with pytest.raises(BudgetTooSmall):
        ranking.keep_counts(AffineParams.identity(len(SIZES)), smallest - 1)
    assert np.array_equal(
        ranking.keep_counts(AffineParams.identity(len(SIZES)), smallest), ranking.smallest
    )


def test_ranking_follows_the_affine_params(ranking: GlobalRanking):
    budget = 0.5 * float(cost(ranking.largest[None])[0])
    base = AffineParams.identity(len(SIZES))
    favour = AffineParams(np.ones(len(SIZES)), np.array([0.0, 0.0, 0.0, 10.0]))
    shun = AffineParams(np.ones(len(SIZES)), np.array([0.0, 0.0, 0.0, -10.0]))
    k0, kf, ks = (ranking.keep_counts(p, budget) for p in (base, favour, shun))
    assert kf[3] == SIZES[3] and ks[3] == min(allowed(SIZES[3]))
    assert kf[3] >= k0[3] >= ks[3]
    # A bigger alpha on one group (scores are positive) ranks its channels higher.
    big = AffineParams(np.array([1.0, 1.0, 1.0, 5.0]), np.zeros(len(SIZES)))
    assert ranking.keep_counts(big, budget)[3] >= k0[3]


def test_transform_keeps_the_order_inside_a_group(ranking: GlobalRanking):
    params = AffineParams(np.array([0.1, 2.0, 5.0, 0.7]), np.array([1.0, -1.0, 0.3, 0.0]))
    for s, t in zip(ranking.scores, ranking.transformed(params), strict=True):
        assert np.array_equal(np.argsort(s, kind="stable"), np.argsort(t, kind="stable"))


def toy_fitness(params: AffineParams) -> float:
    """Best when kappa of group 0 is high and group 3 low (alpha near 1)."""
    return float(
        -((params.kappa[0] - 0.5) ** 2)
        - (params.kappa[3] + 0.5) ** 2
        - 0.1 * ((params.alpha - 1) ** 2).sum()
    )


def test_evolution_is_deterministic_given_seed():
    cfg = EvolutionConfig(population=6, sample=2, evaluations=40, seed=3)
    a = aging_evolution(4, toy_fitness, cfg)
    b = aging_evolution(4, toy_fitness, cfg)
    assert [f for _, f in a.history] == [f for _, f in b.history]
    assert np.array_equal(a.best.kappa, b.best.kappa) and a.best_fitness == b.best_fitness
    c = aging_evolution(
        4, toy_fitness, EvolutionConfig(population=6, sample=2, evaluations=40, seed=4)
    )
    assert [f for _, f in a.history] != [f for _, f in c.history]


def test_evolution_improves_a_toy_fitness():
    cfg = EvolutionConfig(population=8, sample=3, evaluations=200, seed=0)
    res = aging_evolution(4, toy_fitness, cfg)
    identity = toy_fitness(AffineParams.identity(4))
    assert len(res.history) == 200 and res.history[0][1] == identity
    assert res.best_fitness > identity + 0.3  # identity scores -0.5; optimum is 0
    assert np.all(res.best.alpha >= cfg.alpha_min)


def test_evolution_reports_every_evaluation():
    seen = []
    aging_evolution(
        4,
        toy_fitness,
        EvolutionConfig(population=2, sample=1, evaluations=5),
        on_evaluation=lambda i, f, best: seen.append((i, best)),
    )
    assert [i for i, _ in seen] == [1, 2, 3, 4, 5]
    assert all(b2 >= b1 for (_, b1), (_, b2) in zip(seen, seen[1:], strict=False))


@pytest.mark.parametrize(
    "kwargs", [{"population": 0}, {"sample": 9}, {"evaluations": 3}, {"alpha_min": 0}]
)
def test_bad_config(kwargs):
    with pytest.raises(ValueError):
        EvolutionConfig(**kwargs)
