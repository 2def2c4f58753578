"""The "landing" acquisition: measure where the solver lands, on a hand-made toy problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from search.landing import LandingConfig, landing_budgets, near_neighbours
from search.levels import Levels
from search.sampler import SamplerConfig, propose_batch, random_warmup, run_active

# Four channel groups (keep: 5 levels), each feeding one quantized layer whose weight and
# activation bits (2, 4, 6, 8 bits) are two more coordinates: D = 4 + 8.
N_GROUPS = 4
LEVELS = Levels([np.linspace(0, 1, 5)] * N_GROUPS + [np.linspace(0, 1, 4)] * (2 * N_GROUPS))
BIT_DIMS = np.arange(N_GROUPS, 3 * N_GROUPS)
MACS = torch.tensor([3.0, 1.0, 2.0, 1.5], dtype=torch.float64)
WEIGHT = torch.linspace(1.0, 2.0, LEVELS.dim, dtype=torch.float64)


def flops(x: torch.Tensor) -> torch.Tensor:
    """MACs of the kept channels: a quarter of each group is always kept."""
    return (MACS * (0.25 + 0.75 * x[:, :N_GROUPS])).sum(1)


def bitops(x: torch.Tensor) -> torch.Tensor:
    """MACs x weight bits x activation bits, bits = 2 + 6 x."""
    w, a = x[:, N_GROUPS : 2 * N_GROUPS], x[:, 2 * N_GROUPS :]
    return (MACS * (0.25 + 0.75 * x[:, :N_GROUPS]) * (2 + 6 * w) * (2 + 6 * a)).sum(1)


SOLVER_COSTS = {"flops": flops, "bitops": bitops}


def cost_np(x: np.ndarray, fn=flops) -> np.ndarray:
    return fn(torch.as_tensor(np.atleast_2d(x), dtype=torch.float64)).numpy()


class ToyPredictor:
    """Accuracy rising (concavely) in every coordinate; a std that grows away from the data.

    The std is small next to the mean's slope, so the solver's lower confidence bound
    still rises with every level: its answers fill their budgets.
    """

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> ToyPredictor:
        self.X_ = torch.as_tensor(X, dtype=torch.float64)
        return self

    def mean_std_torch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x64 = x.to(torch.float64)
        mean = 0.5 + 0.4 * (WEIGHT * (1 - (1 - x64) ** 2)).sum(1) / WEIGHT.sum()
        sq = ((x64[:, None, :] - self.X_[None]) ** 2).sum(-1)
        dist = -0.1 * torch.logsumexp(-torch.sqrt(sq + 1e-12) / 0.1, dim=1)  # soft minimum
        std = 0.002 + 0.002 * dist.clamp_min(0.0)
        return mean.to(x.dtype), std.to(x.dtype)

    def predict(self, X: np.ndarray, return_std: bool = False):
        with torch.no_grad():
            mean, std = self.mean_std_torch(torch.as_tensor(X, dtype=torch.float64))
        return (mean.numpy(), std.numpy()) if return_std else mean.numpy()


def make_predictor(seed: int) -> ToyPredictor:
    return ToyPredictor(seed)


def evaluate(x: np.ndarray) -> np.ndarray:
    return ToyPredictor().fit(x[:1], np.zeros(1)).predict(x)


LANDING = LandingConfig(budgets=4, starts=8, steps=40)


def config(**kw) -> SamplerConfig:
    return SamplerConfig(**{"batch_size": 8, "acquisition": "landing", "landing": LANDING, **kw})


@pytest.fixture(autouse=True)
def _one_thread():
    with threadpool_limits(1):
        yield


def seen(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = random_warmup(LEVELS, n, np.random.default_rng(seed))
    return x, evaluate(x)


def propose(X: np.ndarray, y: np.ndarray, seed: int = 0, **kw):
    kw = {"solver_costs": SOLVER_COSTS, "bit_dims": BIT_DIMS, "landing_config": LANDING, **kw}
    return propose_batch(LEVELS, X, y, make_predictor, 8, seed, acquisition="landing", **kw)


def index_rows(x: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(r) for r in LEVELS.to_index(x).tolist()]


def within(x: np.ndarray, budgets: dict[str, float]) -> bool:
    return all(cost_np(x, SOLVER_COSTS[k])[0] <= b for k, b in budgets.items())


# ---------------------------------------------------------------------------- pieces


def test_budgets_are_stratified_over_the_range_and_mix_bit_modes() -> None:
    cfg = LandingConfig(budgets=10)
    plan = landing_budgets(SOLVER_COSTS, LEVELS, BIT_DIMS, cfg, np.random.default_rng(0))
    lo, hi = 1.1 * cost_np(LEVELS.lower)[0], 0.95 * cost_np(LEVELS.upper)[0]
    f = np.array([b.budgets["flops"] for b in plan])
    # One FLOPs budget in each tenth of the range (the lowest raised to what is attainable).
    assert sorted(np.floor((f - lo) / (hi - lo) * 10).astype(int).tolist()) == list(range(10))
    top = [b for b in plan if b.top_bits]
    mixed = [b for b in plan if not b.top_bits]
    assert top and all(set(b.budgets) == {"flops"} for b in top)
    factors = {round(b.budgets["bitops"] / b.budgets["flops"], 6) for b in mixed}
    assert factors == {64.0, 16.0, 9.0, 4.0}  # 10 budgets over 5 modes: each mode twice
    assert len(top) == 2


def test_budgets_without_a_bitops_cost_freeze_the_bits() -> None:
    plan = landing_budgets({"flops": flops}, LEVELS, BIT_DIMS, LANDING, np.random.default_rng(1))
    assert all(b.top_bits and set(b.budgets) == {"flops"} for b in plan)


def test_near_neighbours_move_one_or_two_coordinates_within_bounds() -> None:
    idx = np.array([0, 1, 2])
    lo, hi = np.array([0, 0, 2]), np.array([2, 2, 2])  # the last dimension is frozen
    singles = near_neighbours(idx, lo, hi, 0, np.random.default_rng(0))
    assert sorted(map(tuple, singles.tolist())) == [(0, 0, 2), (0, 2, 2), (1, 1, 2)]
    both = near_neighbours(idx, lo, hi, 50, np.random.default_rng(0))
    steps = np.abs(both - idx)
    assert np.all(both[:, 2] == 2) and np.all((both >= lo) & (both <= hi))
    assert set(steps.sum(1).tolist()) == {1, 2} and steps.max() == 1
    assert len({tuple(r) for r in both.tolist()}) == len(both)  # distinct


# ------------------------------------------------------------------------- proposals


def test_landing_batch_holds_feasible_solver_answers_on_the_budget_boundary() -> None:
    X, y = seen()
    p = propose(X, y)
    land = p.landing
    assert p.source == "landing" and p.n_fallback == 0 and len(land.answers) == 4
    assert p.X.shape == (8, LEVELS.dim) and np.array_equal(LEVELS.snap(p.X), p.X)
    assert len(set(index_rows(p.X))) == 8 and not set(index_rows(p.X)) & set(index_rows(X))
    answers = index_rows(land.answers)
    n_answers = len(set(answers))
    assert set(index_rows(p.X[:n_answers])) == set(answers)  # answers first, then neighbours
    for x, b in zip(land.answers, land.budgets, strict=True):
        assert within(x, b.budgets)
        if b.top_bits:
            assert np.all(x[BIT_DIMS] == 1.0)
        # On the boundary: no one-level step up of a free coordinate fits the budgets.
        idx = LEVELS.to_index(x)
        hi = LEVELS.sizes - 1
        frozen = set(BIT_DIMS.tolist()) if b.top_bits else set()
        free = [d for d in range(LEVELS.dim) if idx[d] < hi[d] and d not in frozen]
        for d in free:
            up = idx.copy()
            up[d] += 1
            assert not within(LEVELS.from_index(up), b.budgets)
    # Every neighbour in the batch keeps the budgets of the answer it moved from.
    neighbours = {r: i for r, i in zip(index_rows(land.neighbours), land.origin, strict=True)}
    for row in index_rows(p.X[n_answers:]):
        b = land.budgets[neighbours[row]].budgets
        assert within(LEVELS.from_index(np.array(row)), b)
    assert land.seconds < 5.0


def test_the_same_seed_gives_the_same_batch() -> None:
    X, y = seen()
    a, b, c = propose(X, y, seed=3), propose(X, y, seed=3), propose(X, y, seed=4)
    assert np.array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)


def test_measured_answers_leave_the_batch_to_neighbours_then_to_the_ga() -> None:
    X, y = seen()
    flat = LandingConfig(budgets=4, starts=8, steps=40, risk=0.0)  # the solves ignore the data
    first = propose(X, y, landing_config=flat)
    X2 = np.concatenate([X, first.landing.answers])
    p = propose(X2, evaluate(X2), landing_config=flat)
    assert np.array_equal(p.landing.answers, first.landing.answers)
    assert p.n_fallback == 0 and not set(index_rows(p.X)) & set(index_rows(X2))
    X3 = np.concatenate([X2, p.landing.neighbours])
    q = propose(X3, evaluate(X3), landing_config=flat)
    assert q.source == "landing" and q.n_fallback == 8  # all measured: the GA fills the batch
    assert len(set(index_rows(q.X))) == 8 and not set(index_rows(q.X)) & set(index_rows(X3))


# -------------------------------------------------------------------------- the loop


def interrupt_after(k: int):
    calls = {"n": 0}

    def wrapped(x: np.ndarray) -> np.ndarray:
        if calls["n"] == k:
            raise KeyboardInterrupt
        calls["n"] += 1
        return evaluate(x)

    return wrapped


def run(n: int, cfg: SamplerConfig, fn=evaluate, **kw):
    kw = {"solver_costs": SOLVER_COSTS, "bit_dims": BIT_DIMS, **kw}
    return run_active(LEVELS, fn, make_predictor, n, cfg, **kw)


def test_auto_lands_with_solver_costs_and_a_resumed_run_makes_the_same_choices() -> None:
    cfg = config(acquisition="auto", seed=2)
    full = run(24, cfg)
    assert np.bincount(full.rounds).tolist() == [5, 8, 8, 3]
    assert [i.acquisition for i in full.history] == ["", "landing", "landing", "landing"]
    assert len(set(index_rows(full.X))) == 24
    store: list[tuple] = []
    with pytest.raises(KeyboardInterrupt):
        run(24, cfg, interrupt_after(9), on_sample=lambda *a: store.append(a))
    X, y, r = (np.array([s[i] for s in store]) for i in (0, 1, 3))
    resumed = run(24, cfg, X=X, y=y, rounds=r)
    assert np.array_equal(resumed.X, full.X) and np.array_equal(resumed.rounds, full.rounds)


def test_auto_without_solver_costs_keeps_the_disagreement_search() -> None:
    res = run_active(LEVELS, evaluate, make_predictor, 10, config(acquisition="auto"))
    assert [i.acquisition for i in res.history] == ["", "disagreement"]


def test_landing_respects_a_cost_window() -> None:
    lo, hi = cost_np(LEVELS.lower)[0], cost_np(LEVELS.upper)[0]
    window = (lo + 0.3 * (hi - lo), lo + 0.7 * (hi - lo))
    res = run(21, config(cost_window=window), cost=cost_np)
    c = cost_np(res.X)
    assert np.all((c >= window[0]) & (c <= window[1]))


# --------------------------------------------------------------------- misconfigured


def test_landing_without_solver_costs_is_refused_before_any_measurement() -> None:
    def no_evaluate(x):
        raise AssertionError("nothing may be measured")

    with pytest.raises(ValueError, match="needs the solver's cost functions"):
        run_active(LEVELS, no_evaluate, make_predictor, 10, config())
    with pytest.raises(ValueError, match="'flops' entry"):
        run(10, config(), no_evaluate, solver_costs={"bitops": bitops})


@pytest.mark.parametrize(
    "settings",
    [
        {"acquisition": "uncertainty"},
        {"landing": {"budgets": 0}},
        {"landing": {"risk": -1.0}},
        {"landing": {"bitops_factors": (16.0, 0.0)}},
        {"landing": {"low": 0.9}},
        {"landing": {"high": 1.5}},
    ],
)
def test_unknown_or_invalid_settings_raise(settings: dict) -> None:
    with pytest.raises(ValueError):
        if "landing" in settings:
            LandingConfig(**settings["landing"])
        else:
            SamplerConfig(**settings)


def test_landing_needs_a_differentiable_predictor() -> None:
    class NumpyOnly:
        def fit(self, X, y):
            return self

        def predict(self, X, return_std=False):
            return (np.zeros(len(X)), np.ones(len(X))) if return_std else np.zeros(len(X))

    X, y = seen()
    with pytest.raises(ValueError, match="mean_std_torch"):
        propose_batch(
            LEVELS, X, y, lambda s: NumpyOnly(), 8, 0, acquisition="landing",
            solver_costs=SOLVER_COSTS,
        )  # fmt: skip
