"""Active sampling of policies to measure (SeerNet): measure where the predictor is unsure.

The warm-up measures the caller's *anchors* first (seernet passes the unpruned
highest-bit policy and a ladder of uniform policies, so the simple answers are always
known points), then random policies stratified over model size. After it, every round fits the predictor on
all samples so far and picks a batch of distinct, mutually distant, never-measured
policies by one acquisition:

- "landing" (the default when the caller passes the solver's cost functions): solve on
  the round's predictor at budgets across the range and measure the answers and their
  near neighbours, where the predictor is least sure first (``search.landing``); if
  they are all measured already, the "disagreement" search fills the batch.
- "disagreement" or "sensitivity" (SeerNet's counterfactual criterion): evolve a
  population of policies (``search.evolve``) towards the most uncertain policy anywhere.

Everything is deterministic given ``seed``: each round draws its random numbers from
``(seed, round)``, so a run resumed from its stored samples makes the same choices as
one that was never interrupted.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

from search.acquisition import (
    ACQUISITIONS,
    OUTSIDE,
    CostFn,
    Predictor,
    acquisition_objective,
    disagreement,
    window_violation,
)
from search.evolve import EvolveConfig, evolve
from search.landing import Landing, LandingConfig, SolverCosts, check_solver_costs, solve_landing
from search.levels import Levels

STRATEGIES = ("active", "random")
# "auto": "landing" when run_active gets solver costs, else "disagreement".
ACQUISITION_CHOICES = ("auto", *ACQUISITIONS)
MakePredictor = Callable[[int], Predictor]


def _seed(seed: int, *stream: int) -> int:
    """An independent 32-bit seed for one (round, purpose) stream of a run."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])


# ---------------------------------------------------------------- random, stratified


def scaled_indices(lo: np.ndarray, hi: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` level-index rows within ``[lo, hi]`` per coordinate, each around its own scale
    s, with the n scales spread evenly over (0, 1); shape (n, D).

    The one stratified random sampler of ``search``: collect's warm-up, the active
    sampler's initial population and the solver baselines all draw with it. A window
    narrower than a dimension's levels (``lo == hi`` for a frozen one) is respected.
    """
    lo = np.asarray(lo, dtype=np.int64)
    span = np.asarray(hi, dtype=np.int64) - lo + 1
    # Uniform draws per coordinate give nearly all policies a middling size (the sum
    # concentrates). Instead each coordinate's quantile is Beta(2s, 2(1 - s)), with mean
    # s: s = 1/2 gives uniform random policies, s near 0 or 1 the smallest and largest.
    scale = (rng.permutation(n) + rng.random(n)) / max(n, 1)
    a = np.broadcast_to(np.maximum(2.0 * scale, 1e-3)[:, None], (n, span.size))
    b = np.broadcast_to(np.maximum(2.0 * (1.0 - scale), 1e-3)[:, None], (n, span.size))
    return lo + np.minimum((rng.beta(a, b) * span).astype(np.int64), span - 1)


def _grid_indices(levels: Levels, n: int, rng: np.random.Generator) -> np.ndarray:
    """``scaled_indices`` over every level of every dimension."""
    return scaled_indices(np.zeros(levels.dim, dtype=np.int64), levels.sizes - 1, n, rng)


def _pick_over_cost(c: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``n`` entries of ``c`` whose costs spread evenly over its range."""
    targets = c.min() + (np.arange(n) + rng.random(n)) / n * (c.max() - c.min())
    free = np.ones(c.size, dtype=bool)
    picks = []
    for t in rng.permutation(targets):  # random order, so any prefix is spread out too
        i = int(np.where(free, np.abs(c - t), np.inf).argmin())
        free[i] = False
        picks.append(i)
    return np.array(picks, dtype=np.int64)


def random_warmup(
    levels: Levels,
    n: int,
    rng: np.random.Generator,
    cost: CostFn | None = None,
    cost_window: tuple[float, float] | None = None,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """``n`` distinct random policies spread over model size (over ``cost`` when given)."""
    _check_window(cost, cost_window)
    taken = _index_set(levels, exclude)
    pool: list[tuple[int, ...]] = []
    for _ in range(20):  # a few redraws reach n unless the grid (or window) is nearly full
        for row in map(tuple, _grid_indices(levels, max(8 * n, 256), rng).tolist()):
            if row not in taken:
                taken.add(row)
                pool.append(row)
        idx = np.array(pool, dtype=np.int64).reshape(-1, levels.dim)
        x = levels.from_index(idx)
        c = None if cost is None else np.asarray(cost(x), dtype=np.float64)
        if c is not None and cost_window is not None:
            inside = window_violation(c, cost_window) == 0
            x, c = x[inside], c[inside]
        if len(x) >= n:
            break
    if c is None or len(x) <= n:
        return x[:n]
    return x[_pick_over_cost(c, n, rng)]


def _check_window(cost: CostFn | None, window: tuple[float, float] | None) -> None:
    if window is not None and cost is None:
        raise ValueError("a cost window needs a cost function to measure policies against it")


# ------------------------------------------------------------------------- proposals


@dataclass(frozen=True)
class Proposal:
    """One round's batch of policies to measure and what the predictor thought of them."""

    X: np.ndarray  # (B, D) encoded policies, distinct and never measured before
    acquisition: np.ndarray  # (B,) their acquisition values
    mean_std: float  # mean predicted std over the batch
    mean_std_population: float  # mean predicted std over the pool picked from (GA or landing)
    predictor: Predictor = field(repr=False)  # the predictor fitted for this round
    source: str = "disagreement"  # the acquisition that chose the batch
    n_fallback: int = 0  # of the batch, how many the "disagreement" search added to a landing
    landing: Landing | None = field(default=None, repr=False)  # the solves, for "landing"


def _index_set(levels: Levels, x: np.ndarray | None) -> set[tuple[int, ...]]:
    if x is None or len(x) == 0:
        return set()
    return set(map(tuple, levels.to_index(np.asarray(x)).reshape(-1, levels.dim).tolist()))


def _pick_diverse(
    genomes: np.ndarray,
    scores: np.ndarray,
    taken: set,
    k: int,
    min_distance: float,
    chosen: Sequence[int] = (),
) -> list[int]:
    """Greedily the best-scoring new rows, ``min_distance`` L1 level steps apart if possible,
    added to the rows already ``chosen``."""
    order = [i for i in np.argsort(-scores, kind="stable").tolist() if scores[i] > OUTSIDE]
    order = [i for i in order if tuple(genomes[i].tolist()) not in taken]
    chosen = list(chosen)
    # Halve the spacing until the batch fills: spread out first, then merely distinct.
    for dist in _halvings(min_distance):
        for i in order:
            if len(chosen) == k:
                return chosen
            if i in chosen:
                continue
            if not chosen or np.abs(genomes[chosen] - genomes[i]).sum(axis=1).min() >= dist:
                chosen.append(i)
    return chosen


def _halvings(d: float) -> list[float]:
    out = [d]
    while out[-1] > 1:
        out.append(max(out[-1] / 2, 1))
    return out


def batch_spacing(levels: Levels, fraction: float) -> float:
    """``fraction`` of the mean L1 distance, in level steps, between two uniform random policies."""
    s = levels.sizes.astype(np.float64)
    return fraction * float(((s**2 - 1) / (3 * s)).sum())


def propose_batch(
    levels: Levels,
    X_seen: np.ndarray,
    y_seen: np.ndarray,
    make_predictor: MakePredictor,
    batch_size: int,
    seed: int,
    *,
    acquisition: str = "disagreement",
    cost: CostFn | None = None,
    cost_window: tuple[float, float] | None = None,
    spacing: float = 0.6,
    evolve_config: EvolveConfig | None = None,
    solver_costs: SolverCosts | None = None,
    bit_dims: Sequence[int] | np.ndarray = (),
    landing_config: LandingConfig | None = None,
) -> Proposal:
    """Fit the predictor on the samples and pick a batch of new policies by ``acquisition``.

    "landing" needs ``solver_costs`` (torch cost functions, see ``search.landing``) and a
    predictor with a differentiable ``mean_std_torch``; ``bit_dims`` are the coordinates
    its "bits at the highest" solves freeze at their top level.
    """
    _check_acquisition(acquisition, solver_costs)
    _check_window(cost, cost_window)
    predictor = make_predictor(_seed(seed, 0))
    if acquisition == "landing" and not callable(getattr(predictor, "mean_std_torch", None)):
        raise ValueError(
            "acquisition 'landing' solves on the predictor: it needs a predictor with a "
            "differentiable mean_std_torch(x) -> (mean, std)"
        )
    # One numpy/scipy BLAS thread for the fit. The default (one per core) only adds waiting
    # on the prior model's least squares (many SVDs of small Jacobians): on a busy 2-core
    # machine a fit on 17 samples took 32-50 s with 2 threads and 1.6 s with 1, with the
    # same predictions. The caller's own limits are restored afterwards.
    with threadpool_limits(1, user_api="blas"):
        predictor.fit(np.asarray(X_seen, dtype=np.float64), np.asarray(y_seen, dtype=np.float64))
    X_seen = np.asarray(X_seen, dtype=np.float64).reshape(-1, levels.dim)
    ga = {"cost": cost, "window": cost_window, "spacing": spacing, "config": evolve_config}
    if acquisition != "landing":
        x, acq, pop_std = _evolve_batch(
            levels, predictor, X_seen, batch_size, seed, acquisition, **ga
        )
        return Proposal(x, acq, _mean_std(predictor, x), pop_std, predictor, acquisition)
    landing = solve_landing(
        predictor.mean_std_torch, solver_costs, levels, bit_dims,
        landing_config or LandingConfig(), np.random.default_rng(_seed(seed, 3)),
        lambda i: _seed(seed, 4, i),
    )  # fmt: skip
    x, pool_std = _pick_landing(
        levels, predictor, landing, X_seen, batch_size, batch_spacing(levels, spacing), cost,
        cost_window,
    )  # fmt: skip
    n_fallback = 0
    if len(x) < batch_size:  # every answer and neighbour measured: the GA fills the batch
        seen = np.concatenate([X_seen, x])
        extra, _, _ = _evolve_batch(
            levels, predictor, seen, batch_size - len(x), seed, "disagreement", **ga
        )
        x, n_fallback = np.concatenate([x, extra]), len(extra)
    acq = disagreement(predictor, x) if len(x) else np.zeros(0)
    mean_std = float(acq.mean()) if len(x) else float("nan")
    return Proposal(x, acq, mean_std, pool_std, predictor, "landing", n_fallback, landing)


def _evolve_batch(
    levels: Levels,
    predictor: Predictor,
    X_seen: np.ndarray,
    k: int,
    seed: int,
    acquisition: str,
    *,
    cost: CostFn | None,
    window: tuple[float, float] | None,
    spacing: float,
    config: EvolveConfig | None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """``k`` new policies evolved towards ``acquisition``: (policies, their scores, the mean
    std over the final population)."""
    config = config or EvolveConfig()
    score = acquisition_objective(acquisition, predictor, levels, cost, window)
    rng = np.random.default_rng(_seed(seed, 1))
    init = _grid_indices(levels, 4 * config.population, rng)
    if cost is not None and window is not None:  # start from the policies in the window
        gap = window_violation(np.asarray(cost(levels.from_index(init)), dtype=np.float64), window)
        init = init[np.argsort(gap, kind="stable")]
    result = evolve(levels.sizes, score, init[: config.population], _seed(seed, 2), config)
    taken = _index_set(levels, X_seen)
    chosen = _pick_diverse(result.genomes, result.scores, taken, k, batch_spacing(levels, spacing))
    x = levels.from_index(result.genomes[chosen])
    if len(chosen) < k:  # the search saw too few: top up with random new policies
        extra = random_warmup(
            levels, k - len(chosen), rng, cost, window, exclude=np.concatenate([X_seen, x])
        )
        x = np.concatenate([x, extra])
    pop_std = _mean_std(predictor, levels.from_index(result.population))
    return x, score(levels.to_index(x)), pop_std


def _pick_landing(
    levels: Levels,
    predictor: Predictor,
    landing: Landing,
    X_seen: np.ndarray,
    k: int,
    min_distance: float,
    cost: CostFn | None,
    window: tuple[float, float] | None,
) -> tuple[np.ndarray, float]:
    """Up to ``k`` new, distinct policies of a landing: answers first, the most uncertain
    first, then neighbours spread out; and the mean std over the new candidates."""
    pool = np.concatenate([landing.answers, landing.neighbours])
    is_answer = np.arange(len(pool)) < len(landing.answers)
    std = disagreement(predictor, pool)
    inside = np.ones(len(pool), dtype=bool)
    if cost is not None and window is not None:
        inside = window_violation(np.asarray(cost(pool), dtype=np.float64), window) == 0
    idx = levels.to_index(pool)
    seen = _index_set(levels, X_seen)
    rows = []
    for i in np.lexsort((-std, ~is_answer)).tolist():  # answers first, each by std, descending
        key = tuple(idx[i].tolist())
        if inside[i] and key not in seen:
            seen.add(key)
            rows.append(i)
    rows = np.array(rows, dtype=np.int64)
    answers = np.flatnonzero(is_answer[rows])[:k].tolist()
    chosen = _pick_diverse(idx[rows], std[rows], set(), k, min_distance, chosen=answers)
    pool_std = float(std[rows].mean()) if len(rows) else float("nan")
    return pool[rows[chosen]].reshape(-1, levels.dim), pool_std


def _check_acquisition(name: str, solver_costs: SolverCosts | None) -> None:
    if name not in ACQUISITIONS:
        raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {name!r}")
    if name == "landing":
        if solver_costs is None:
            raise ValueError(
                "acquisition 'landing' measures where the solver lands and needs the solver's "
                "cost functions: pass solver_costs={'flops': ..., 'bitops': ...}, or choose "
                "'disagreement' or 'sensitivity'"
            )
        check_solver_costs(solver_costs)


def resolve_acquisition(name: str, solver_costs: SolverCosts | None) -> str:
    """The acquisition a run uses: "auto" is "landing" with solver costs, else "disagreement"."""
    if name == "auto":
        name = "landing" if solver_costs is not None else "disagreement"
    _check_acquisition(name, solver_costs)
    return name


def _mean_std(predictor: Predictor, x: np.ndarray) -> float:
    return float(disagreement(predictor, x).mean()) if len(x) else float("nan")


# ------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class SamplerConfig:
    """How ``run_active`` samples; ``seed`` fixes every random choice.

    ``acquisition`` "auto" is "landing" when ``run_active`` gets the solver's cost
    functions and "disagreement" otherwise; ``landing`` sets how "landing" solves
    (budgets per round, the solver's ``risk``, the BitOPs factors).
    """

    strategy: str = "active"
    acquisition: str = "auto"
    batch_size: int = 16
    warmup_fraction: float = 0.2
    # Batch members at least this fraction of the mean L1 distance between two random
    # policies apart: without it a batch crowds into one uncertain corner.
    spacing: float = 0.6
    cost_window: tuple[float, float] | None = None
    eval_chunk: int = 1  # policies per evaluate call; 1 = store every sample as it lands
    seed: int = 0
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    landing: LandingConfig = field(default_factory=LandingConfig)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.acquisition not in ACQUISITION_CHOICES:
            raise ValueError(
                f"acquisition must be one of {ACQUISITION_CHOICES}, got {self.acquisition!r}"
            )
        if self.batch_size < 1 or self.eval_chunk < 1:
            raise ValueError("batch_size and eval_chunk must be >= 1")
        if not 0.0 < self.warmup_fraction <= 1.0:
            raise ValueError("warmup_fraction must be in (0, 1]")
        if self.spacing < 0:
            raise ValueError("spacing must be >= 0")
        if self.cost_window is not None and self.cost_window[0] > self.cost_window[1]:
            raise ValueError("cost_window must be (lo, hi) with lo <= hi")


@dataclass(frozen=True)
class RoundInfo:
    """What one round is about to measure; passed to ``on_round`` before measuring."""

    round: int  # 0 = warm-up (or the whole random run), then 1, 2, ...
    strategy: str  # "warmup", "active" or "random"
    n_measured: int  # samples measured before this round's new ones
    n_new: int  # policies this round will measure
    mean_std: float  # mean predicted std over the batch (nan for random rounds)
    # mean predicted std over the pool the batch was picked from: the GA's population,
    # or the landing's new candidates (nan for random rounds)
    mean_std_population: float
    acquisition: str = ""  # what chose an active batch; "" for warm-up and random rounds
    n_fallback: int = 0  # of a "landing" batch, how many the "disagreement" GA added


@dataclass
class SamplingResult:
    """All samples (given and new), the round of each, and the rounds run now."""

    X: np.ndarray
    y: np.ndarray
    rounds: np.ndarray
    history: list[RoundInfo]
    complete: bool  # False when the space (or cost window) ran out of new policies


# on_sample(x (D,), accuracy, strategy, round) runs right after each measurement, so the
# caller can persist it before the next one starts; strategy is "warmup", "active" or
# "random". on_round(info) runs once per round, after choosing and before measuring.
OnSample = Callable[[np.ndarray, float, str, int], None]
OnRound = Callable[[RoundInfo], None]


def _prior(
    levels: Levels, X: np.ndarray | None, y: np.ndarray | None, rounds: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples measured earlier as arrays; without round labels they count as warm-up."""
    X = (
        np.zeros((0, levels.dim))
        if X is None
        else np.asarray(X, dtype=np.float64).reshape(-1, levels.dim)
    )
    y = np.zeros(0) if y is None else np.asarray(y, dtype=np.float64).reshape(-1)
    rounds = (
        np.zeros(len(X), dtype=np.int64) if rounds is None else np.asarray(rounds, dtype=np.int64)
    )
    if not len(X) == len(y) == len(rounds):
        raise ValueError(f"X, y and rounds disagree in length: {len(X)}, {len(y)}, {len(rounds)}")
    return X, y, rounds


def _round_target(
    r: int, rounds: np.ndarray, n_samples: int, config: SamplerConfig, n_anchors: int = 0
) -> int:
    """How many samples round ``r`` holds once complete."""
    if config.strategy == "random":  # one round takes all that is left
        return n_samples - int((rounds < r).sum())
    if r == 0:  # the warm-up holds at least every anchor
        warm = max(1, round(config.warmup_fraction * n_samples), n_anchors)
        return min(n_samples, warm)
    return min(config.batch_size, n_samples - int((rounds < r).sum()))


def _first_round(
    levels: Levels,
    X_before: np.ndarray,
    n_target: int,
    anchors: np.ndarray | None,
    rng: np.random.Generator,
    cost: CostFn | None,
    window: tuple[float, float] | None,
) -> np.ndarray:
    """The anchors (first, in the caller's order), then stratified random policies."""
    snapped = np.zeros((0, levels.dim))
    if anchors is not None and len(anchors):
        snapped = levels.snap(np.asarray(anchors, dtype=np.float64).reshape(-1, levels.dim))
        _, first = np.unique(levels.to_index(snapped), axis=0, return_index=True)
        snapped = snapped[np.sort(first)]  # distinct, in the caller's order
    # Random picks never repeat an anchor; the caller skips anchors measured before.
    n_random = max(n_target - len(snapped), 0)
    exclude = np.concatenate([X_before.reshape(-1, levels.dim), snapped])
    return np.concatenate([snapped, random_warmup(levels, n_random, rng, cost, window, exclude)])


@dataclass(frozen=True)
class _Solver:
    """What the "landing" acquisition gets from ``run_active``'s caller."""

    costs: SolverCosts | None
    bit_dims: Sequence[int] | np.ndarray


def _plan(
    r: int,
    levels: Levels,
    X: np.ndarray,
    y: np.ndarray,
    rounds: np.ndarray,
    n_target: int,
    make_predictor: MakePredictor,
    cost: CostFn | None,
    config: SamplerConfig,
    anchors: np.ndarray | None = None,
    solver: _Solver = _Solver(None, ()),
) -> tuple[np.ndarray, str, Proposal | None]:
    """Round ``r``'s full proposal, recomputed from the samples of earlier rounds only."""
    before = rounds < r
    if r == 0 or config.strategy == "random":
        rng = np.random.default_rng(_seed(config.seed, r, 0))
        first = anchors if r == 0 else None
        x = _first_round(levels, X[before], n_target, first, rng, cost, config.cost_window)
        return x, ("random" if config.strategy == "random" else "warmup"), None
    p = propose_batch(
        levels,
        X[before],
        y[before],
        make_predictor,
        n_target,
        _seed(config.seed, r),
        acquisition=resolve_acquisition(config.acquisition, solver.costs),
        cost=cost,
        cost_window=config.cost_window,
        spacing=config.spacing,
        evolve_config=config.evolve,
        solver_costs=solver.costs,
        bit_dims=solver.bit_dims,
        landing_config=config.landing,
    )
    return p.X, "active", p


def run_active(
    levels: Levels,
    evaluate: Callable[[np.ndarray], np.ndarray],
    make_predictor: MakePredictor,
    n_samples: int,
    config: SamplerConfig | None = None,
    *,
    cost: CostFn | None = None,
    X: np.ndarray | None = None,
    y: np.ndarray | None = None,
    rounds: np.ndarray | None = None,
    on_sample: OnSample | None = None,
    on_round: OnRound | None = None,
    anchors: np.ndarray | None = None,
    solver_costs: SolverCosts | None = None,
    bit_dims: Sequence[int] | np.ndarray = (),
) -> SamplingResult:
    """Measure policies round by round until ``n_samples`` exist, resuming from ``X, y, rounds``.

    ``anchors`` (K, D): policies the warm-up measures before any random one (snapped to
    the levels, in the given order, skipped when already measured). A store resumed
    past its warm-up does not measure anchors it lacks.

    ``solver_costs`` ({"flops": fn, "bitops": fn}, torch functions of float64 (N, D)
    encoded policies, non-decreasing in every coordinate; "bitops" optional) turn on the
    "landing" acquisition; ``bit_dims`` are the bit-width coordinates, frozen at their
    top level (the highest bit-width) in its "bits at the highest" solves.
    """
    config = config or SamplerConfig()
    _check_window(cost, config.cost_window)
    resolve_acquisition(config.acquisition, solver_costs)  # a misconfiguration fails first
    solver = _Solver(solver_costs, bit_dims)
    X, y, rounds = _prior(levels, X, y, rounds)
    taken = _index_set(levels, X)
    history: list[RoundInfo] = []
    r = int(rounds.max()) if len(rounds) else 0  # the last round may be unfinished: redo it
    while len(X) < n_samples:
        n_anchors = 0 if anchors is None else len(anchors)
        target = _round_target(r, rounds, n_samples, config, n_anchors)
        missing = min(target - int((rounds == r).sum()), n_samples - len(X))
        if missing <= 0:
            r += 1
            continue
        proposal, strategy, p = _plan(
            r, levels, X, y, rounds, target, make_predictor, cost, config, anchors, solver
        )
        fresh = [
            i for i, row in enumerate(levels.to_index(proposal).tolist()) if tuple(row) not in taken
        ]
        new = proposal[fresh[:missing]]
        if len(new) == 0:
            warnings.warn(
                f"round {r}: no unmeasured policy left to propose; stopping at {len(X)} samples",
                RuntimeWarning,
                stacklevel=2,
            )
            return SamplingResult(X, y, rounds, history, complete=False)
        info = RoundInfo(r, strategy, len(X), len(new), np.nan, np.nan)
        if p is not None:
            info = replace(
                info, mean_std=p.mean_std, mean_std_population=p.mean_std_population,
                acquisition=p.source, n_fallback=p.n_fallback,
            )  # fmt: skip
        history.append(info)
        if on_round is not None:
            on_round(info)
        for start in range(0, len(new), config.eval_chunk):
            chunk = new[start : start + config.eval_chunk]
            acc = np.asarray(evaluate(chunk), dtype=np.float64).reshape(-1)
            if acc.shape != (len(chunk),):
                raise ValueError(
                    f"evaluate returned {acc.shape[0]} values for {len(chunk)} policies"
                )
            for xi, yi in zip(chunk, acc.tolist(), strict=True):
                X, y, rounds = np.vstack([X, xi]), np.append(y, yi), np.append(rounds, r)
                taken.add(tuple(levels.to_index(xi).tolist()))
                if on_sample is not None:
                    on_sample(xi.copy(), yi, strategy, r)
        r += 1
    return SamplingResult(X, y, rounds, history, complete=True)
