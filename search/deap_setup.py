"""The one DEAP set-up of ``search``: a maximised fitness, a genome carrying it, a seeded RNG.

Every genetic search here (``evolve``, ``baselines``, ``legr``) maximises one number per
genome, so they share these classes instead of each declaring its own. We subclass
rather than use ``deap.creator.create``, which writes classes into a global module and
would make importing two searches order-dependent.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from deap import base


class MaxFitness(base.Fitness):
    """One objective, maximised."""

    weights = (1.0,)


class Genome(list):
    """A list of genes (level indices or real parameters) carrying a ``MaxFitness``."""

    def __init__(self, genes: Sequence[float] | Sequence[int] = ()) -> None:
        super().__init__(genes)
        self.fitness = MaxFitness()


@contextmanager
def seeded_python_random(seed: int) -> Iterator[None]:
    """Seed the global ``random`` for one search and put the caller's state back afterwards."""
    # DEAP's operators draw from the global ``random`` module: seeding it for this search
    # only makes results reproducible without anything outside seeing a change.
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


__all__ = ["Genome", "MaxFitness", "seeded_python_random"]
