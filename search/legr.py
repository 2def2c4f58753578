"""LeGR: one learned global ranking of filters, thresholded for any FLOPs budget.

Chin et al., "Towards Efficient Model Compression via Learned Global Ranking"
(CVPR 2020). Every channel ``i`` of channel group ``l`` gets the score
``alpha_l * s_li + kappa_l``, where ``s_li`` is its base importance (the caller's
choice; seernet passes the group's combined squared L2 filter norm) normalized per
group to unit L2 norm, as LeGR's code does per layer. One ranking of all channels
across groups, cut at a threshold, says how many channels every group keeps; the
per-group affine parameters are learned by regularized (aging) evolution with the
accuracy of the model pruned at one target budget as fitness.

Assumptions, stated once:
- ``alpha_l > 0`` (mutation clamps it at ``alpha_min``), so the transform never
  changes the order of channels *inside* a group: LeGR decides how many channels each
  group keeps, not which ones.
- The cost is non-decreasing in every group's keep count, so keeping fewer channels
  never breaks a budget and all groups at their smallest count is the cheapest model.
- Keep counts are snapped to each group's allowed counts (the policy space's levels)
  and the result meets the budget exactly: ``cost(keep) <= budget``, no tolerance.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from deap import tools

from search.deap_setup import Genome, seeded_python_random

# keep counts (N, G) int -> cost (N,); must be non-decreasing in every column.
KeepCost = Callable[[np.ndarray], np.ndarray]


class BudgetTooSmall(ValueError):
    """The budget is below the cost of every group at its smallest allowed count."""

    def __init__(self, budget: float, smallest: float) -> None:
        super().__init__(f"budget {budget:g} is below the smallest attainable cost {smallest:g}")
        self.budget, self.smallest = budget, smallest


@dataclass(frozen=True)
class AffineParams:
    """Per-group scale ``alpha`` and shift ``kappa`` of the normalized scores."""

    alpha: np.ndarray  # (G,) > 0
    kappa: np.ndarray  # (G,)

    @classmethod
    def identity(cls, n_groups: int) -> AffineParams:
        """alpha = 1, kappa = 0: the plain global ranking of normalized norms."""
        return cls(np.ones(n_groups), np.zeros(n_groups))

    def genes(self) -> list[float]:
        return [*map(float, self.alpha), *map(float, self.kappa)]

    @classmethod
    def from_genes(cls, genes: Sequence[float]) -> AffineParams:
        g = np.asarray(genes, dtype=np.float64)
        n = g.size // 2
        return cls(g[:n].copy(), g[n:].copy())


def normalize_scores(scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Divide every group's scores by their L2 norm (LeGR's per-layer normalization)."""
    out = []
    for s in scores:
        s = np.abs(np.asarray(s, dtype=np.float64))
        norm = float(np.sqrt((s * s).sum()))
        out.append(s / norm if norm > 0 else np.zeros_like(s))
    return out


class GlobalRanking:
    """Normalized per-channel scores of every group, allowed keep counts and a cost."""

    def __init__(
        self, scores: Sequence[np.ndarray], allowed: Sequence[Sequence[int]], cost: KeepCost
    ) -> None:
        if len(scores) != len(allowed) or not scores:
            raise ValueError("need one score array and one list of allowed keep counts per group")
        self.scores = normalize_scores(scores)
        self.allowed = [np.unique(np.asarray(a, dtype=np.int64)) for a in allowed]
        for g, (s, a) in enumerate(zip(self.scores, self.allowed, strict=True)):
            if a.size == 0 or a[0] < 1 or a[-1] > s.size:
                raise ValueError(
                    f"group {g}: allowed keep counts must lie in 1..{s.size}, got {a.tolist()}"
                )
        self.cost = cost
        self.n_groups = len(self.scores)
        self.group_of = np.concatenate([np.full(s.size, g) for g, s in enumerate(self.scores)])
        # Spread of the normalized scores: the natural unit of kappa's mutations.
        self.score_scale = float(np.concatenate(self.scores).std()) or 1.0

    @property
    def smallest(self) -> np.ndarray:
        return np.array([a[0] for a in self.allowed])

    @property
    def largest(self) -> np.ndarray:
        return np.array([a[-1] for a in self.allowed])

    def transformed(self, params: AffineParams) -> list[np.ndarray]:
        """``alpha_l * s + kappa_l`` of every channel, per group."""
        return [a * s + k for s, a, k in zip(self.scores, params.alpha, params.kappa, strict=True)]

    def _cost(self, keep: np.ndarray) -> np.ndarray:
        return np.asarray(self.cost(np.atleast_2d(keep)), dtype=np.float64).reshape(-1)

    def _floor(self, counts: np.ndarray) -> np.ndarray:
        """Largest allowed count <= ``counts`` per group, never below the smallest."""
        return np.array(
            [
                a[max(int(np.searchsorted(a, c, side="right")) - 1, 0)]
                for a, c in zip(self.allowed, counts, strict=True)
            ]
        )

    def keep_counts(self, params: AffineParams, budget: float) -> np.ndarray:
        """Kept channels per group from the thresholded ranking, on allowed counts, cost <= budget."""
        smallest = float(self._cost(self.smallest)[0])
        if smallest > budget:
            raise BudgetTooSmall(budget, smallest)
        if float(self._cost(self.largest)[0]) <= budget:
            return self.largest.copy()
        t = self.transformed(params)
        flat = np.concatenate(t)
        # Descending score; ties broken by group then channel so the order is deterministic.
        order = np.lexsort((np.arange(flat.size), -flat))
        # counts[k] = channels of each group among the k best (k = 0 .. N).
        onehot = np.zeros((flat.size + 1, self.n_groups), dtype=np.int64)
        onehot[np.arange(1, flat.size + 1), self.group_of[order]] = 1
        counts = onehot.cumsum(axis=0)
        # Floor-snapped cost is non-decreasing in k: bisect the largest feasible threshold.
        lo, hi = 0, flat.size  # lo always feasible (all groups at their smallest)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._cost(self._floor(counts[mid]))[0] <= budget:
                lo = mid
            else:
                hi = mid - 1
        return self._fill(self._floor(counts[lo]), t, budget)

    def _fill(self, keep: np.ndarray, t: list[np.ndarray], budget: float) -> np.ndarray:
        """Spend what snapping left over: raise the group whose next channel ranks best, while it fits."""
        keep = keep.copy()
        ranked = [np.sort(s)[::-1] for s in t]  # alpha > 0: the group's own order
        while True:
            cands = [g for g in range(self.n_groups) if keep[g] < self.allowed[g][-1]]
            if not cands:
                return keep
            rows = np.repeat(keep[None], len(cands), axis=0)
            for r, g in enumerate(cands):
                rows[r, g] = self.allowed[g][
                    int(np.searchsorted(self.allowed[g], keep[g], side="right"))
                ]
            ok = self._cost(rows) <= budget
            if not ok.any():
                return keep
            priority = np.array([ranked[g][keep[g]] for g in cands])
            best = max(np.flatnonzero(ok), key=lambda r: (priority[r], -cands[r]))
            keep = rows[best]


@dataclass(frozen=True)
class EvolutionConfig:
    """Regularized evolution: LeGR's search, sized for a few dozen real evaluations."""

    population: int = 8
    sample: int = 3
    evaluations: int = 30  # total fitness calls, the initial population included
    sigma_alpha: float = 0.3
    sigma_kappa: float = 0.5  # in units of the normalized scores' spread
    gene_prob: float | None = None  # chance each gene mutates; None = 1 / G (about two genes)
    alpha_min: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.population < 1 or not 1 <= self.sample <= self.population:
            raise ValueError("population must be >= 1 and 1 <= sample <= population")
        if self.evaluations < self.population:
            raise ValueError(
                f"evaluations ({self.evaluations}) must be at least the population ({self.population})"
            )
        if self.sigma_alpha < 0 or self.sigma_kappa < 0 or self.alpha_min <= 0:
            raise ValueError("sigmas must be >= 0 and alpha_min > 0")
        if self.gene_prob is not None and not 0.0 < self.gene_prob <= 1.0:
            raise ValueError("gene_prob must be in (0, 1] or None")


@dataclass
class EvolutionResult:
    """The best parameters found, and every evaluation in the order it was made."""

    best: AffineParams
    best_fitness: float
    history: list[tuple[AffineParams, float]] = field(default_factory=list)
    seconds: float = 0.0


def _mutate(genome: Genome, config: EvolutionConfig, kappa_sigma: float) -> Genome:
    """Gaussian mutation of some genes (at least one), alpha kept >= alpha_min."""
    n = len(genome) // 2
    child = Genome(list(genome))
    indpb = config.gene_prob if config.gene_prob is not None else min(1.0, 1.0 / n)
    sigmas = [config.sigma_alpha] * n + [kappa_sigma] * n
    before = list(child)
    tools.mutGaussian(child, mu=0.0, sigma=sigmas, indpb=indpb)
    if child == before:  # an unchanged child would waste a real evaluation
        i = random.randrange(2 * n)
        child[i] += random.gauss(0.0, sigmas[i] or 1e-3)
    for i in range(n):
        child[i] = max(child[i], config.alpha_min)
    return child


def aging_evolution(
    n_groups: int,
    fitness: Callable[[AffineParams], float],
    config: EvolutionConfig,
    score_scale: float = 1.0,
    on_evaluation: Callable[[int, float, float], None] | None = None,
) -> EvolutionResult:
    """Regularized evolution (Real et al. 2019) of LeGR's affine parameters.

    The population starts with the identity (the plain global ranking) and mutations
    of it; each later step samples ``config.sample`` members, mutates the fittest, and
    replaces the oldest member with the child. ``on_evaluation(i, fitness, best)`` is
    called after every evaluation (progress bars).
    """
    start = time.perf_counter()
    kappa_sigma = config.sigma_kappa * score_scale
    history: list[tuple[AffineParams, float]] = []
    best: tuple[float, list[float]] | None = None

    def evaluate(genome: Genome) -> None:
        nonlocal best
        params = AffineParams.from_genes(genome)
        value = float(fitness(params))
        genome.fitness.values = (value,)
        history.append((params, value))
        if best is None or value > best[0]:
            best = (value, list(genome))
        if on_evaluation is not None:
            on_evaluation(len(history), value, best[0])

    with seeded_python_random(config.seed):
        identity = Genome(AffineParams.identity(n_groups).genes())
        population: deque[Genome] = deque()
        for i in range(config.population):
            g = identity if i == 0 else _mutate(identity, config, kappa_sigma)
            evaluate(g)
            population.append(g)
        for _ in range(config.evaluations - config.population):
            parent = tools.selBest(random.sample(list(population), config.sample), 1)[0]
            child = _mutate(parent, config, kappa_sigma)
            evaluate(child)
            population.append(child)
            population.popleft()  # aging: the oldest goes, however fit
    assert best is not None
    return EvolutionResult(
        AffineParams.from_genes(best[1]), best[0], history, time.perf_counter() - start
    )


__all__ = [
    "AffineParams",
    "BudgetTooSmall",
    "EvolutionConfig",
    "EvolutionResult",
    "GlobalRanking",
    "aging_evolution",
    "normalize_scores",
]
