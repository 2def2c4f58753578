"""The one DEAP set-up shared by every genetic search in ``search``."""

import copy
import random

from deap import tools

import search.baselines
import search.evolve
import search.legr
from search.deap_setup import Genome, MaxFitness, seeded_python_random


def test_every_search_uses_the_shared_genome():
    for module in (search.evolve, search.baselines, search.legr):
        assert module.Genome is Genome
        assert not [n for n in vars(module) if n in ("_Fitness", "_Genome", "_Individual")], (
            module.__name__
        )


def test_genome_maximises_and_copies_with_its_fitness():
    a, b = Genome([1, 2]), Genome([3, 4])
    a.fitness.values, b.fitness.values = (1.0,), (2.0,)
    assert isinstance(a.fitness, MaxFitness) and tools.selBest([a, b], 1)[0] is b
    c = copy.deepcopy(b)
    assert c == b and c.fitness.values == (2.0,) and c.fitness is not b.fitness


def test_seeded_random_is_reproducible_and_restores_the_callers_state():
    random.seed(123)
    outside = random.random()
    random.seed(123)
    with seeded_python_random(7):
        first = [random.random() for _ in range(3)]
    assert random.random() == outside  # the caller's stream continues untouched
    with seeded_python_random(7):
        assert [random.random() for _ in range(3)] == first
