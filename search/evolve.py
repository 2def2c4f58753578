"""Genetic search over level-index genomes (DEAP), for objectives scored in batches.

A genome is one policy written as per-dimension level indices (``0 .. sizes[d] - 1``),
so every genome is a valid policy by construction. The objective takes a whole
``(N, D)`` index array at once, because the objectives we evolve against are
predictor calls that are cheap per batch and slow per row.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from deap import algorithms, base, tools

from search.deap_setup import Genome, seeded_python_random

CROSSOVERS = ("uniform", "two_point")


@dataclass(frozen=True)
class EvolveConfig:
    """Settings of the genetic search; defaults suit a few dozen dimensions."""

    population: int = 64
    generations: int = 20
    cx_prob: float = 0.6
    mut_prob: float = 0.5
    gene_prob: float | None = None  # chance each gene mutates; None = 2 / D
    step_prob: float = 0.7  # a mutated gene steps one level (else jumps to a random level)
    tournament: int = 3
    crossover: str = "uniform"
    elite: int = 2

    def __post_init__(self) -> None:
        if self.population < 2 or self.generations < 0:
            raise ValueError("population must be >= 2 and generations >= 0")
        for name in ("cx_prob", "mut_prob", "step_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.gene_prob is not None and not 0.0 < self.gene_prob <= 1.0:
            raise ValueError("gene_prob must be in (0, 1] or None")
        if self.crossover not in CROSSOVERS:
            raise ValueError(f"crossover must be one of {CROSSOVERS}, got {self.crossover!r}")
        if self.tournament < 1 or not 0 <= self.elite < self.population:
            raise ValueError("tournament must be >= 1 and 0 <= elite < population")


@dataclass(frozen=True)
class EvolveResult:
    """Every distinct genome scored during the search, and the final population."""

    genomes: np.ndarray  # (M, D) int level indices, each scored once
    scores: np.ndarray  # (M,)
    population: np.ndarray  # (P, D) the last generation


def mutate_levels(
    genome: list[int], sizes: np.ndarray, gene_prob: float, step_prob: float
) -> tuple[list[int]]:
    """Move each gene, with probability ``gene_prob``, one level up/down or to a random level."""
    for d, n in enumerate(sizes.tolist()):
        if n < 2 or random.random() >= gene_prob:
            continue
        if random.random() < step_prob:
            step = random.choice((-1, 1))
            # Reflect at the ends so a step always changes the gene.
            genome[d] = genome[d] + step if 0 <= genome[d] + step < n else genome[d] - step
        else:
            genome[d] = random.randrange(n)
    return (genome,)


def _toolbox(sizes: np.ndarray, config: EvolveConfig) -> base.Toolbox:
    gene_prob = config.gene_prob if config.gene_prob is not None else min(1.0, 2.0 / sizes.size)
    tb = base.Toolbox()
    if config.crossover == "two_point" and sizes.size >= 2:
        tb.register("mate", tools.cxTwoPoint)
    else:  # two-point crossover needs two genes; one gene falls back to uniform
        tb.register("mate", tools.cxUniform, indpb=0.5)
    tb.register(
        "mutate", mutate_levels, sizes=sizes, gene_prob=gene_prob, step_prob=config.step_prob
    )
    tb.register("select", tools.selTournament, tournsize=config.tournament)
    return tb


def _score_new(
    genomes: list[Genome], score: Callable[[np.ndarray], np.ndarray], archive: dict
) -> None:
    """Give every genome without a fitness its score, calling ``score`` once for unseen ones."""
    todo = [g for g in genomes if not g.fitness.valid]
    fresh = list(dict.fromkeys(tuple(g) for g in todo if tuple(g) not in archive))
    if fresh:
        values = np.asarray(score(np.array(fresh, dtype=np.int64)), dtype=np.float64)
        if values.shape != (len(fresh),):
            raise ValueError(f"score returned shape {values.shape}, expected ({len(fresh)},)")
        archive.update(zip(fresh, values.tolist(), strict=True))
    for g in todo:
        g.fitness.values = (archive[tuple(g)],)


def evolve(
    sizes: np.ndarray,
    score: Callable[[np.ndarray], np.ndarray],
    init: np.ndarray,
    seed: int,
    config: EvolveConfig | None = None,
) -> EvolveResult:
    """Maximize ``score`` over level-index genomes, starting from the ``init`` population."""
    config = config or EvolveConfig()
    sizes = np.asarray(sizes, dtype=np.int64)
    tb = _toolbox(sizes, config)
    archive: dict[tuple[int, ...], float] = {}
    pop = [Genome(row) for row in np.asarray(init, dtype=np.int64).tolist()]
    with seeded_python_random(seed):
        _score_new(pop, score, archive)
        for _ in range(config.generations):
            elite = tools.selBest(pop, config.elite)
            offspring = algorithms.varAnd(
                tb.select(pop, len(pop)), tb, config.cx_prob, config.mut_prob
            )
            _score_new(offspring, score, archive)
            # Keep the best parents so the search never loses its best find.
            offspring.sort(key=lambda g: g.fitness.values[0], reverse=True)
            pop = offspring[: len(pop) - len(elite)] + [tb.clone(g) for g in elite]
    genomes = np.array(list(archive.keys()), dtype=np.int64).reshape(-1, sizes.size)
    return EvolveResult(genomes, np.array(list(archive.values())), np.array(pop, dtype=np.int64))
