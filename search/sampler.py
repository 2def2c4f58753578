"""Active sampling of policies to measure (SeerNet): measure where the predictor is unsure.

The warm-up measures the caller's *anchors* first (seernet passes the unpruned
highest-bit policy and a ladder of uniform policies, so the simple answers are always
known points), then random policies stratified over model size. After it, every round fits the predictor on
all samples so far, evolves a population of policies (``search.evolve``) towards the
highest acquisition -- ensemble disagreement, or SeerNet's counterfactual sensitivity
-- and measures a batch of distinct, mutually distant, never-measured policies.

Everything is deterministic given ``seed``: each round draws its random numbers from
``(seed, round)``, so a run resumed from its stored samples makes the same choices as
one that was never interrupted.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

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
from search.levels import Levels

STRATEGIES = ("active", "random")
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
    mean_std_population: float  # mean predicted std over the GA's final population
    predictor: Predictor = field(repr=False)  # the predictor fitted for this round


def _index_set(levels: Levels, x: np.ndarray | None) -> set[tuple[int, ...]]:
    if x is None or len(x) == 0:
        return set()
    return set(map(tuple, levels.to_index(np.asarray(x)).reshape(-1, levels.dim).tolist()))


def _pick_diverse(
    genomes: np.ndarray, scores: np.ndarray, taken: set, k: int, min_distance: float
) -> list[int]:
    """Greedily the best-scoring new rows, ``min_distance`` L1 level steps apart if possible."""
    order = [i for i in np.argsort(-scores, kind="stable").tolist() if scores[i] > OUTSIDE]
    order = [i for i in order if tuple(genomes[i].tolist()) not in taken]
    chosen: list[int] = []
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
) -> Proposal:
    """Fit the predictor on the samples and evolve a batch of new policies it is unsure of."""
    if acquisition not in ACQUISITIONS:
        raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {acquisition!r}")
    _check_window(cost, cost_window)
    config = evolve_config or EvolveConfig()
    predictor = make_predictor(_seed(seed, 0))
    predictor.fit(np.asarray(X_seen, dtype=np.float64), np.asarray(y_seen, dtype=np.float64))
    score = acquisition_objective(acquisition, predictor, levels, cost, cost_window)
    rng = np.random.default_rng(_seed(seed, 1))
    init = _grid_indices(levels, 4 * config.population, rng)
    if cost is not None and cost_window is not None:  # start from the policies in the window
        gap = window_violation(
            np.asarray(cost(levels.from_index(init)), dtype=np.float64), cost_window
        )
        init = init[np.argsort(gap, kind="stable")]
    result = evolve(levels.sizes, score, init[: config.population], _seed(seed, 2), config)
    taken = _index_set(levels, X_seen)
    chosen = _pick_diverse(
        result.genomes, result.scores, taken, batch_size, batch_spacing(levels, spacing)
    )
    x = levels.from_index(result.genomes[chosen])
    if len(chosen) < batch_size:  # the search saw too few: top up with random new policies
        extra = random_warmup(
            levels,
            batch_size - len(chosen),
            rng,
            cost,
            cost_window,
            exclude=np.concatenate([np.asarray(X_seen).reshape(-1, levels.dim), x]),
        )
        x = np.concatenate([x, extra])
    pop_std = _mean_std(predictor, levels.from_index(result.population))
    return Proposal(x, score(levels.to_index(x)), _mean_std(predictor, x), pop_std, predictor)


def _mean_std(predictor: Predictor, x: np.ndarray) -> float:
    return float(disagreement(predictor, x).mean()) if len(x) else float("nan")


# ------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class SamplerConfig:
    """How ``run_active`` samples; ``seed`` fixes every random choice."""

    strategy: str = "active"
    acquisition: str = "disagreement"
    batch_size: int = 16
    warmup_fraction: float = 0.2
    # Batch members at least this fraction of the mean L1 distance between two random
    # policies apart: without it a batch crowds into one uncertain corner.
    spacing: float = 0.6
    cost_window: tuple[float, float] | None = None
    eval_chunk: int = 1  # policies per evaluate call; 1 = store every sample as it lands
    seed: int = 0
    evolve: EvolveConfig = field(default_factory=EvolveConfig)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {self.acquisition!r}")
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
    mean_std_population: float  # mean predicted std over the GA population (nan for random)


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
) -> tuple[np.ndarray, str, float, float]:
    """Round ``r``'s full proposal, recomputed from the samples of earlier rounds only."""
    before = rounds < r
    if r == 0 or config.strategy == "random":
        rng = np.random.default_rng(_seed(config.seed, r, 0))
        first = anchors if r == 0 else None
        x = _first_round(levels, X[before], n_target, first, rng, cost, config.cost_window)
        return x, ("random" if config.strategy == "random" else "warmup"), np.nan, np.nan
    p = propose_batch(
        levels,
        X[before],
        y[before],
        make_predictor,
        n_target,
        _seed(config.seed, r),
        acquisition=config.acquisition,
        cost=cost,
        cost_window=config.cost_window,
        spacing=config.spacing,
        evolve_config=config.evolve,
    )
    return p.X, "active", p.mean_std, p.mean_std_population


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
) -> SamplingResult:
    """Measure policies round by round until ``n_samples`` exist, resuming from ``X, y, rounds``.

    ``anchors`` (K, D): policies the warm-up measures before any random one (snapped to
    the levels, in the given order, skipped when already measured). A store resumed
    past its warm-up does not measure anchors it lacks.
    """
    config = config or SamplerConfig()
    _check_window(cost, config.cost_window)
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
        proposal, strategy, mean_std, pop_std = _plan(
            r, levels, X, y, rounds, target, make_predictor, cost, config, anchors
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
        info = RoundInfo(r, strategy, len(X), len(new), mean_std, pop_std)
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
