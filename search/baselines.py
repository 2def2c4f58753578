"""Baselines for the solver: a genetic algorithm (DEAP) and random search.

Both take the same inputs and return the same ``SolveResult`` as
``search.solver.barrier_ascent``, so the three can be compared budget by budget.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping

import numpy as np
import torch
from deap import tools
from torch import Tensor

from search.deap_setup import Genome, seeded_python_random
from search.levels import Levels
from search.repair import CostFn, LevelGrid, MeanStdFn, Problem, repair
from search.sampler import scaled_indices
from search.solver import SolveResult, corner_shortcut, make_problem, result, torch_threads


def _random_indices(grid: LevelGrid, n: int, rng: np.random.Generator) -> Tensor:
    """``n`` stratified random index rows within the grid's window (frozen dims stay put),
    spread over model size so tight budgets still get feasible draws."""
    lo, hi = grid.lo_idx.numpy(), grid.hi_idx.numpy()
    return torch.from_numpy(scaled_indices(lo, hi, n, rng))


def random_search(
    mean_std: MeanStdFn,
    costs: Mapping[str, CostFn],
    budgets: Mapping[str, float],
    levels: Levels,
    *,
    fixed: np.ndarray | None = None,
    fixed_values: np.ndarray | None = None,
    n: int = 10000,
    batch: int = 2048,
    seed: int = 0,
    threads: int | None = 1,
) -> SolveResult:
    """Best of ``n`` random policies that meet every budget (the rest are discarded)."""
    started = time.perf_counter()
    with torch_threads(threads):
        problem = make_problem(mean_std, costs, budgets, levels, fixed, fixed_values)
        early = corner_shortcut(problem, started)
        if early is not None:
            return early
        best, found = _best_random(problem, n, batch, np.random.default_rng(seed))
        note = f"{found} of {n} samples met the budgets"
        if found == 0:
            note += "; returned the smallest policy"
        return result(problem, best, started, note)


def _best_random(
    problem: Problem, n: int, batch: int, rng: np.random.Generator
) -> tuple[Tensor, int]:
    """The best feasible index row among ``n`` scaled random draws, and how many were feasible."""
    best, best_obj, found = problem.grid.lo_idx, -float("inf"), 0
    with torch.no_grad():
        for start in range(0, n, batch):
            idx = _random_indices(problem.grid, min(batch, n - start), rng)
            idx = idx[problem.feasible(idx)]
            found += idx.shape[0]
            if idx.shape[0] == 0:
                continue
            obj = problem.objective(problem.grid.values(idx))
            i = int(obj.argmax())
            if float(obj[i]) > best_obj:
                best, best_obj = idx[i], float(obj[i])
    return best, found


def _clone(ind: Genome) -> Genome:
    """A copy that keeps the (still valid) fitness of its parent."""
    child = Genome(list(ind))
    if ind.fitness.valid:
        child.fitness.values = ind.fitness.values
    return child


def _evaluate(problem: Problem, population: list[Genome]) -> None:
    """Repair every individual in place (Lamarckian) and set its fitness, batched."""
    todo = [ind for ind in population if not ind.fitness.valid]
    if not todo:
        return
    with torch.no_grad():
        idx = repair(problem, torch.tensor(todo, dtype=torch.long))
        obj = problem.objective(problem.grid.values(idx))
    for ind, genes, o in zip(todo, idx.tolist(), obj.tolist(), strict=True):
        ind[:] = genes
        ind.fitness.values = (o,)


def _offspring(pop: list[Genome], low: list[int], up: list[int], cfg: dict) -> list:
    """Tournament selection, uniform crossover and per-gene random-level mutation."""
    children = [_clone(ind) for ind in tools.selTournament(pop, len(pop), cfg["tour"])]
    for a, b in zip(children[::2], children[1::2], strict=False):
        if random.random() < cfg["cx"]:
            tools.cxUniform(a, b, 0.5)
            del a.fitness.values, b.fitness.values
    for child in children:
        if random.random() < cfg["mut"]:
            tools.mutUniformInt(child, low, up, cfg["gene"])
            del child.fitness.values
    return children


def genetic_search(
    mean_std: MeanStdFn,
    costs: Mapping[str, CostFn],
    budgets: Mapping[str, float],
    levels: Levels,
    *,
    fixed: np.ndarray | None = None,
    fixed_values: np.ndarray | None = None,
    population: int = 64,
    generations: int = 50,
    seconds: float | None = None,
    cx_prob: float = 0.7,
    mut_prob: float = 0.5,
    gene_prob: float | None = None,
    tournament: int = 3,
    seed: int = 0,
    threads: int | None = 1,
) -> SolveResult:
    """Best policy found by a genetic algorithm over level indices.

    Infeasible individuals are *repaired* (not penalized) with the solver's greedy
    repair, and the repaired genome replaces the original. The best individual is kept
    across generations (elitism). Stops after ``generations`` or ``seconds``, whichever
    comes first. ``gene_prob`` defaults to 1/D.
    """
    started = time.perf_counter()
    with torch_threads(threads):
        problem = make_problem(mean_std, costs, budgets, levels, fixed, fixed_values)
        early = corner_shortcut(problem, started)
        if early is not None:
            return early
        cfg = {
            "pop": population,
            "gens": generations,
            "tour": tournament,
            "cx": cx_prob,
            "mut": mut_prob,
            "gene": gene_prob or 1.0 / problem.grid.dim,
        }
        with seeded_python_random(seed):
            best = _evolve(problem, cfg, seed, None if seconds is None else started + seconds)
        return result(problem, torch.tensor(best, dtype=torch.long), started)


def _evolve(problem: Problem, cfg: dict, seed: int, deadline: float | None) -> list[int]:
    """The generational loop with elitism; returns the best genome."""
    grid = problem.grid
    low, up = grid.lo_idx.tolist(), grid.hi_idx.tolist()
    init = _random_indices(grid, cfg["pop"], np.random.default_rng(seed))
    pop = [Genome(row) for row in init.tolist()]
    _evaluate(problem, pop)
    for _ in range(cfg["gens"]):
        if deadline is not None and time.perf_counter() > deadline:
            break
        elite = tools.selBest(pop, 1)[0]
        pop = _offspring(pop, low, up, cfg)
        _evaluate(problem, pop)
        pop[pop.index(tools.selWorst(pop, 1)[0])] = elite
    return list(tools.selBest(pop, 1)[0])
