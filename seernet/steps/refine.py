"""``solve --refine N``'s files: refines every budget (``seernet.steps.refine_loop``), writes
each incumbent's policy document with every candidate's figures, and saves the predictor
refitted on what was measured, so later ``solve`` calls see it.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import numpy as np

from search.solver import SolveResult
from seernet.space.policy_document import Measured, PolicyDocument
from seernet.steps.budget_anchors import anchors
from seernet.steps.context import RunContext
from seernet.steps.refine_loop import Fit, Refined, refine_budget
from seernet.steps.solve import BudgetSet, policy_document
from seernet.workspace.artifacts import PREDICTOR_NAME, STORE_NAME
from seernet.workspace.store import SampleStore

REFINE_STRATEGY = "refine"


def fit_predictor(ctx: RunContext, store: SampleStore, seed: int) -> Fit:
    """The refit used between rounds: ``fit-predictor``'s predictor on every stored sample."""
    from seernet.steps.fit import make_predictor, predictor_tables, val_images

    n_val = val_images(ctx, store.spec.protocol)
    tables = predictor_tables(ctx, store.spec.protocol)
    return lambda X, y: make_predictor(X, y, seed, n_val, tables)


def refined_document(
    ctx: RunContext, bset: BudgetSet, out: Refined, bits_mode: str, seconds: float
) -> PolicyDocument:
    """The policy document of the incumbent, with every candidate's figures and source."""
    best = out.best
    res = SolveResult(
        best.x, best.predicted_mean, best.predicted_std, {}, bset.budgets, True, seconds
    )
    measured = Measured(
        val_accuracy=best.measured, evaluations=out.evaluations, strategy=REFINE_STRATEGY,
        source=best.source, margin=out.margin,
        candidates=[{"encoded": [float(v) for v in c.x], "predicted_mean": c.predicted_mean,
                     "predicted_std": c.predicted_std, "measured": c.measured, "new": c.new,
                     "source": c.source} for c in out.candidates],
        skipped=[{"source": src, "predicted_mean": m, "predicted_std": sd} for src, m, sd in out.skipped],
    )  # fmt: skip
    return replace(policy_document(ctx, bset, res, bits_mode), measured=measured)


def with_measured_latency(ctx: RunContext, doc: PolicyDocument) -> PolicyDocument:
    """``doc`` with its policy's latency measured where the latency table was made (as
    ``compress`` checks it), and whether its latency budget held; unchanged without a table."""
    from seernet.latency.table import measured_latency_ms

    table = ctx.costs.latency_table
    if table is None:
        return doc
    ms = measured_latency_ms(ctx.model, ctx.space, doc.policy, table)
    budget = doc.budgets.get("latency")
    held = None if budget is None else ms <= budget
    return replace(doc, measured=replace(doc.measured, latency_ms=ms, latency_held=held))


def refine_all(
    ctx: RunContext, predictor: object, bsets: list[BudgetSet], fixed: np.ndarray | None,
    values: np.ndarray | None, bits_mode: str, n_evals: int, seed: int = 0,
) -> list[PolicyDocument]:  # fmt: skip
    """Refine every budget set in turn (later budgets start from the latest predictor).

    Writes ``policies/<name>.json`` per budget and the last refitted predictor to
    ``predictor.pt``, so later ``solve`` calls see what refining measured.
    """
    from seernet.compression.protocol import Protocol
    from seernet.steps.collect import Measurer

    store = SampleStore.open(ctx.ws.path(STORE_NAME), fingerprint=ctx.space.fingerprint)
    measurer = Measurer(ctx, store, Protocol(**store.spec.protocol))
    docs, sens_cache = [], {}
    try:
        for bset in bsets:
            started = time.perf_counter()
            starts = anchors(ctx, predictor, bset, fixed, values, sens_cache)
            out = refine_budget(ctx, predictor, bset, fixed, values, n_evals,
                                lambda x: measurer.measure(x, REFINE_STRATEGY, 0), store,
                                fit_predictor(ctx, store, seed), seed, starts)  # fmt: skip
            predictor = out.predictor
            doc = refined_document(ctx, bset, out, bits_mode, time.perf_counter() - started)
            docs.append(with_measured_latency(ctx, doc).save(ctx.ws))
        if any(d.measured.evaluations for d in docs):
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
