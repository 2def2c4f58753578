"""``solve --refine N``: measure what the solver returns, learn from it, solve again.

Per budget, up to ``N`` rounds of: solve on the current predictor, measure the solved
policy with the store's collect protocol (appended to ``samples.h5`` as strategy
``refine``), refit the predictor on every sample, solve again. The answer is the best
*measured* policy of those rounds, so the accuracy a user reads is a measurement, next
to what the predictor promised before measuring it.

A round stops the loop early when the solver returns a policy the store already holds
(the refitted predictor agrees with what was measured: another round would measure the
same policy again).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from search.solver import SolveResult
from seernet.steps.context import RunContext
from seernet.steps.solve import BudgetSet, policy_document, solve_one
from seernet.workspace.artifacts import PREDICTOR_NAME, STORE_NAME, write_json
from seernet.workspace.store import SampleStore

REFINE_STRATEGY = "refine"
Fit = Callable[[np.ndarray, np.ndarray], object]  # (X, y) -> a fitted predictor


@dataclass
class Candidate:
    """One solved policy: what the predictor said before it was measured, and the measurement."""

    x: np.ndarray
    predicted_mean: float
    predicted_std: float
    measured: float
    new: bool  # measured now (False: the store already held it)


@dataclass
class Refined:
    """The rounds of one budget; ``best`` is the highest measured candidate."""

    candidates: list[Candidate] = field(default_factory=list)
    predictor: object = None  # the last refitted predictor

    @property
    def best(self) -> Candidate:
        return max(self.candidates, key=lambda c: c.measured)

    @property
    def evaluations(self) -> int:
        return sum(c.new for c in self.candidates)


def stored_accuracy(store: SampleStore, x: np.ndarray) -> float | None:
    """Mean measured accuracy of ``x`` in the store (None if never measured)."""
    if not len(store):
        return None
    hits = np.all(store.encoded == x, axis=1)
    return float(store.accuracy[hits].mean()) if hits.any() else None


def refine_budget(
    ctx: RunContext,
    predictor: object,
    bset: BudgetSet,
    fixed: np.ndarray | None,
    values: np.ndarray | None,
    n_evals: int,
    measure: Callable[[np.ndarray], float],
    store: SampleStore,
    fit: Fit,
    seed: int = 0,
) -> Refined:
    """Solve, measure, refit, re-solve: up to ``n_evals`` measurements for one budget set."""
    if n_evals < 1:
        raise ValueError(f"--refine needs at least 1 evaluation per budget, got {n_evals}")
    out = Refined(predictor=predictor)
    while out.evaluations < n_evals:
        res = solve_one(ctx, out.predictor, bset, fixed, values, seed)
        x = ctx.space.encode(ctx.space.decode(res.x))
        known = stored_accuracy(store, x)
        if known is not None:
            out.candidates.append(Candidate(x, res.mean, res.std, known, new=False))
            break
        acc = measure(x)
        out.candidates.append(Candidate(x, res.mean, res.std, acc, new=True))
        out.predictor = fit(store.encoded, store.accuracy)
    return out


def fit_predictor(ctx: RunContext, store: SampleStore, seed: int) -> Fit:
    """The refit used between rounds: ``fit-predictor``'s ensemble on every stored sample."""
    from seernet.steps.fit import make_predictor, val_images

    n_val = val_images(ctx, store.spec.protocol)
    return lambda X, y: make_predictor(X, y, seed, n_val)


def refined_document(
    ctx: RunContext, bset: BudgetSet, out: Refined, bits_mode: str, seconds: float
) -> dict:
    """The policy document of the best measured candidate, with every round's figures."""
    best = out.best
    res = SolveResult(
        best.x, best.predicted_mean, best.predicted_std, {}, bset.budgets, True, seconds
    )
    doc = policy_document(ctx, bset, res, bits_mode)
    doc["measured"] = {
        "val_accuracy": best.measured, "evaluations": out.evaluations, "strategy": REFINE_STRATEGY,
        "candidates": [{"encoded": [float(v) for v in c.x], "predicted_mean": c.predicted_mean,
                        "predicted_std": c.predicted_std, "measured": c.measured, "new": c.new}
                       for c in out.candidates],
    }  # fmt: skip
    return doc


def refine_all(
    ctx: RunContext, predictor: object, bsets: list[BudgetSet], fixed: np.ndarray | None,
    values: np.ndarray | None, bits_mode: str, n_evals: int, seed: int = 0,
) -> list[dict]:  # fmt: skip
    """Refine every budget set in turn (later budgets start from the latest predictor).

    Writes ``policies/<name>.json`` per budget and the last refitted predictor to
    ``predictor.pt``, so later ``solve`` calls see what refining measured.
    """
    from seernet.compression.protocol import Protocol
    from seernet.steps.collect import Measurer

    store = SampleStore.open(ctx.ws.path(STORE_NAME), fingerprint=ctx.space.fingerprint)
    measurer = Measurer(ctx, store, Protocol(**store.spec.protocol))
    docs = []
    try:
        for bset in bsets:
            started = time.perf_counter()
            out = refine_budget(ctx, predictor, bset, fixed, values, n_evals,
                                lambda x: measurer.measure(x, REFINE_STRATEGY, 0), store, fit_predictor(ctx, store, seed), seed)  # fmt: skip
            predictor = out.predictor
            doc = refined_document(ctx, bset, out, bits_mode, time.perf_counter() - started)
            path = ctx.ws.path("policies", f"{bset.name}.json")
            write_json(path, doc)
            docs.append({**doc, "path": str(path)})
        if any(d["measured"]["evaluations"] for d in docs):
            save_predictor(ctx, predictor, len(store))
    finally:
        store.close()
    return docs


def save_predictor(ctx: RunContext, predictor: object, n_samples: int) -> None:
    """Replace ``predictor.pt`` atomically by the predictor refitted on the refined store."""
    path = ctx.ws.path(PREDICTOR_NAME)
    meta = {"space_fingerprint": ctx.space.fingerprint, "input_dim": ctx.space.dim,
            "n_samples": n_samples, "fitted_by": "solve --refine"}  # fmt: skip
    tmp = path.with_name(path.name + ".tmp")
    predictor.save(tmp, meta)
    os.replace(tmp, path)
