"""The pipeline's steps on an open run (a ``RunContext``): what the CLI commands and
``seernet.Compressor`` both call, so there is one code path from a budget to a model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from seernet.errors import UserError
from seernet.space.policy_document import PolicyDocument, as_document
from seernet.steps.context import RunContext
from seernet.units import Budget, parse_budget_list
from seernet.workspace.artifacts import PREDICTOR_NAME, STORE_NAME


def collect_samples(
    ctx: RunContext, samples: int, protocol=None, sampler=None, backend=None
) -> dict:
    """Measure policies until the store holds ``samples`` (resumes); the store's summary
    (``seernet.steps.collect.store_summary``, plus ``collected``: how many were measured now).

    ``protocol`` (a ``Protocol``) defaults to the store's own, or the default for a new store;
    ``backend`` (a ``BackendConfig``) to this process. A batch that would not fit in memory,
    or a backend whose package is missing, is refused before the store is created."""
    from search.sampler import SamplerConfig
    from seernet.compression.protocol import Protocol
    from seernet.memory import check_run_fits
    from seernet.steps.backends import BackendConfig
    from seernet.steps.collect import collect, store_spec, store_summary
    from seernet.workspace.store import SampleStore

    if samples < 1:
        raise UserError(f"samples must be at least 1, got {samples}")
    backend = backend or BackendConfig()
    backend.check_available()
    path = ctx.ws.path(STORE_NAME)
    if protocol is None and path.is_file():
        with SampleStore.open(path, fingerprint=ctx.space.fingerprint) as old:
            protocol = Protocol(**old.spec.protocol)
    protocol = protocol or Protocol()
    ctx.criterion(protocol.criterion)  # an unknown name or missing learned scores fail first
    check_run_fits(ctx.model, ctx.space.input_shape, ctx.device, protocol.batch_size)
    if ctx.splits.task.metric is not None and not path.is_file():
        # a user's metric is scored once on the base model before any store exists, so one
        # that fails (NaN, not a number, raises) leaves nothing behind
        ctx.splits.task.score(ctx.model, ctx.splits.val, ctx.device, limit=protocol.val_limit)
    with SampleStore.open_or_create(path, store_spec(ctx, protocol)) as store:
        before = len(store)
        if before < samples:
            collect(ctx, store, samples, protocol, sampler or SamplerConfig(), backend)
        return {**store_summary(store), "collected": len(store) - before}


@dataclass
class Fitted:
    """A fitted predictor and how well it cross-validated."""

    predictor: Any  # a predictor.prior_model.PriorModel
    cv: Any  # a predictor.crossval.CVResult
    trust: list[str]  # what the spread and the cap mean, in words
    y: np.ndarray  # the accuracies it was fitted on
    seconds: float


def fit_predictor(ctx: RunContext, folds: int = 5, seed: int = 0) -> Fitted:
    """Cross-validate the predictor against baselines on the store, fit it on every sample
    and save it in the workspace (``predictor.pt``)."""
    from seernet.steps.fit import (
        base_cap,
        cross_validate_samples,
        fit_and_save,
        load_samples,
        predictor_tables,
        trust_lines,
    )

    if folds < 2:
        raise UserError(f"--folds must be at least 2, got {folds}")
    X, y, n_val = load_samples(ctx)
    tables = predictor_tables(ctx)
    start = time.perf_counter()
    cv = cross_validate_samples(X, y, folds, seed, tables)
    model = fit_and_save(ctx, X, y, n_val, cv, seed, ctx.ws.path(PREDICTOR_NAME), tables)
    trust = trust_lines(model, cv, base_cap(X, y, n_val))
    return Fitted(model, cv, trust, y, time.perf_counter() - start)


BudgetText = str | float | int | list | tuple | None


def parse_budgets(**given: BudgetText) -> dict[str, list[Budget]]:
    """Budgets as the user wrote them (``flops="50%"``, ``size=["1MB", "2MB"]``, ``bitops=3e8``),
    parsed once; the text travels with each ``Budget``."""
    from seernet.steps.solve import BUDGET_KINDS

    out = {}
    for name, value in given.items():
        if value is None:
            continue
        if name not in BUDGET_KINDS:
            raise UserError(f"unknown budget {name!r}; budgets: {', '.join(BUDGET_KINDS)}")
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        out[name] = parse_budget_list(text, BUDGET_KINDS[name], f"--{name}")
    return out


def parse_bits(bits: str | int) -> int | None:
    """``"mixed"`` (search the bit-widths: None) or one bit-width for every layer."""
    if bits == "mixed":
        return None
    try:
        return int(bits)
    except (TypeError, ValueError) as exc:
        raise UserError(f"--bits must be 'mixed' or a bit-width, got {bits!r}") from exc


def check_solve_options(
    budgets: dict[str, list[Budget]], pareto: int | None, refine: int | None,
    channel_multiple: int | None = None,
) -> None:  # fmt: skip
    """Refuse a solve that cannot run, before anything is read."""
    if channel_multiple is not None and channel_multiple < 1:
        raise UserError(f"--channel-multiple must be at least 1, got {channel_multiple}")
    if refine is not None and refine < 1:
        raise UserError(f"--refine N needs N >= 1 measurements per budget, got {refine}")
    if pareto is not None and (pareto < 1 or budgets):
        raise UserError("--pareto K needs K >= 1 and no other budget flag")


def solve_policies(
    ctx: RunContext, budgets: dict[str, list[Budget]], bits: int | None, pareto: int | None = None,
    refine: int | None = None, seed: int = 0, channel_multiple: int | None = None,
) -> list[PolicyDocument]:  # fmt: skip
    """One policy per budget, written to ``policies/<name>.json``; their documents (``path`` set).

    Without ``refine``: the fast solve on the predictor (a prediction). With ``refine`` N:
    up to N measurements per budget, the answer measured (``solve --refine``).
    ``channel_multiple``: every pruned group keeps a multiple of it (``--channel-multiple``)."""
    from seernet.steps.fit import load_samples
    from seernet.steps.solve import (
        attach_latency,
        bits_mask,
        load_predictor,
        policy_document,
        resolve_budgets,
        solve_context,
        solve_fast,
        solved_multiple,
    )

    check_solve_options(budgets, pareto, refine, channel_multiple)
    ctx = solve_context(ctx, channel_multiple)
    if refine and solved_multiple(ctx) != ctx.space.choices.channel_multiple:
        # Its anchors (global ranking, HAWQ) and trust regions know only the collected space.
        raise UserError(
            "--refine searches the collected space: collect with --channel-multiple N instead"
        )
    predictor = load_predictor(ctx)
    attach_latency(ctx, required="latency" in budgets)
    fixed, values = bits_mask(ctx, bits)
    bsets = resolve_budgets(ctx, budgets, pareto, mixed=bits is None)
    if ctx.channel_multiple > ctx.space.choices.channel_multiple:  # files of their own
        for bset in bsets:
            bset.name += f"_ch{ctx.channel_multiple}"
    mode = "mixed" if bits is None else f"{bits}-bit"
    if refine:
        from seernet.steps.refine import refine_all

        return refine_all(ctx, predictor, bsets, fixed, values, mode, refine, seed)
    stored = load_samples(ctx)[:2]
    return [
        policy_document(
            ctx, bset, solve_fast(ctx, predictor, bset, fixed, values, stored, seed), mode
        ).save(ctx.ws)
        for bset in bsets
    ]


def compress_policy(
    ctx: RunContext, policy: PolicyDocument | dict | str | Path, settings=None
) -> tuple[nn.Module, dict]:  # fmt: skip
    """Prune, quantize, fine-tune and export a solved policy (its document, the document's
    JSON object, or its file); the compressed model and its metrics (also in
    ``compressed/<name>/metrics.json``)."""
    from seernet.memory import check_run_fits
    from seernet.steps.compress import CompressSettings, check_document, compress_model

    settings = settings or CompressSettings()
    ctx.criterion(settings.criterion)  # an unknown name fails before any work
    doc = PolicyDocument.load(policy) if isinstance(policy, (str, Path)) else as_document(policy)
    check_document(doc, ctx.space)
    # The unpruned base model bounds the compressed one: refuse a batch it could not train on.
    check_run_fits(ctx.model, ctx.space.input_shape, ctx.device, train_batch=settings.batch_size)
    return compress_model(ctx, doc, doc.policy, settings, doc.path)
