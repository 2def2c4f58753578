"""``solve --refine N``: start from what a user already has, measure, learn, search nearby.

Per budget, up to ``N`` measurements with the store's collect protocol, each appended to
``samples.h5`` (strategy ``refine``) and followed by a refit of the predictor:

1. **Known points.** The best policy the store already measured within the budgets, then
   the fast solve's own answer (what ``solve`` without ``--refine`` returns), measured.
2. **Anchors.** Torch-Pruning's global ranking (``seernet.compression.global_ranking``) at
   each uniform bit-width the budgets allow; the ``ANCHORS`` the predictor rates highest are
   measured.
   Under a BitOPs or weight-size budget, also HAWQ-V3's allocation
   (``seernet.compression.hawq``: Hessian-trace sensitivity, ILP) on the global ranking's
   channels at the FLOPs budget.
   An anchor is measured unless the refitted predictor rules it out (its mean + ``SKIP_Z``
   std below the best measured policy): when the fast answer is good, refine spends its
   measurements near it instead. Every measured anchor still bounds the answer from below.
3. **Trust region.** The solver runs again on the refitted predictor, each coordinate
   allowed to move at most ``TRUST_RADIUS`` levels from the incumbent (the best measured
   policy so far); the result is measured. A round that returns a policy the store already
   holds ends the loop (the predictor has nothing new to say near the incumbent).

The answer is the incumbent: a later candidate replaces it only when it measures higher by
more than ``MARGIN``, so a lucky draw does not displace a known-good policy. The accuracy a
user reads is therefore a measurement, shown next to what the predictor promised before it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from search.levels import Levels
from search.solver import SolveResult
from seernet.space.policy import Policy
from seernet.steps.context import RunContext
from seernet.steps.solve import (
    TRUST_RADIUS,
    BudgetSet,
    fits,
    policy_document,
    solve_fast,
    solve_one,
)
from seernet.workspace.artifacts import PREDICTOR_NAME, STORE_NAME, write_json
from seernet.workspace.store import SampleStore

REFINE_STRATEGY = "refine"
ANCHORS = 2  # global-ranking bit-widths measured per budget (the best predicted ones)
# Accuracy points a candidate must gain over the incumbent. The collect protocol's own
# seed-to-seed spread near 90% (three ResNet-20 policies at 50% FLOPs, protocol seeds 0 and 1)
# was 0.12-0.36 points; the store rarely holds repeats to estimate it per run.
MARGIN = 0.25
# An anchor is skipped when even mean + SKIP_Z std is below the best measured policy.
SKIP_Z = 2.0
Fit = Callable[[np.ndarray, np.ndarray], object]  # (X, y) -> a fitted predictor


@dataclass
class Candidate:
    """One policy considered for a budget: what the predictor said before it was measured,
    the measurement, and where the policy came from (store, global-ranking, trust-region)."""

    x: np.ndarray
    predicted_mean: float
    predicted_std: float
    measured: float
    new: bool  # measured now (False: the store already held it)
    source: str = "trust-region"


@dataclass
class Refined:
    """The candidates of one budget; ``best`` is the incumbent (see the module docstring)."""

    candidates: list[Candidate] = field(default_factory=list)
    predictor: object = None  # the last refitted predictor
    margin: float = 0.0  # a candidate must beat the incumbent by more than this
    skipped: list[tuple[str, float, float]] = field(default_factory=list)  # (source, mean, std)

    @property
    def best(self) -> Candidate:
        best = self.candidates[0]
        for c in self.candidates[1:]:
            if c.measured > best.measured + self.margin:
                best = c
        return best

    @property
    def evaluations(self) -> int:
        return sum(c.new for c in self.candidates)


def stored_accuracy(store: SampleStore, x: np.ndarray) -> float | None:
    """Mean measured accuracy of ``x`` in the store (None if never measured)."""
    if not len(store):
        return None
    hits = np.all(store.encoded == x, axis=1)
    return float(store.accuracy[hits].mean()) if hits.any() else None


def predict(predictor: object, x: np.ndarray) -> tuple[float, float]:
    """The predictor's mean and std for one encoded policy."""
    with torch.no_grad():
        mean, std = predictor.mean_std_torch(
            torch.as_tensor(np.asarray(x, dtype=np.float64))[None].float()
        )
    return float(mean.reshape(-1)[0]), float(std.reshape(-1)[0])


def best_stored(ctx: RunContext, store: SampleStore, bset: BudgetSet, fixed, values) -> int | None:
    """Row of the most accurate stored sample within the budgets (None: no such sample)."""
    if not len(store):
        return None
    ok = fits(ctx, store.encoded, bset.budgets, fixed, values)
    return int(np.flatnonzero(ok)[store.accuracy[ok].argmax()]) if ok.any() else None


def anchors(
    ctx: RunContext,
    predictor: object,
    bset: BudgetSet,
    fixed,
    values,
    sens_cache: dict | None = None,
) -> Iterator[tuple[np.ndarray, str]]:
    """(policy, source) to measure: Torch-Pruning's global-ranking policy at every uniform
    bit-width that meets the budgets (and the frozen bits), the best predicted ``ANCHORS``
    of them, then HAWQ's allocation where the budgets allow one (``hawq_anchor``).

    A generator, so HAWQ's Hessian is only taken when refine has a measurement left for it."""
    from seernet.compression.global_ranking import global_ranking_policy

    found = []
    for bits in ctx.space.choices.bits:
        try:
            policy, _ = global_ranking_policy(ctx.model, ctx.space, ctx.costs, bset.budgets, bits)
        except ValueError:  # these bits cannot meet the budgets within max_prune
            continue
        x = ctx.space.encode(widest_activations(ctx, policy, bset.budgets))
        if fits(ctx, x[None], bset.budgets, fixed, values)[0]:
            found.append(x)
    found.sort(key=lambda x: -predict(predictor, x)[0])
    for x in found[:ANCHORS]:
        yield x, "global-ranking"
    hawq = hawq_anchor(ctx, bset.budgets, {} if sens_cache is None else sens_cache)
    if hawq is not None and fits(ctx, hawq[None], bset.budgets, fixed, values)[0]:
        yield hawq, "hawq"


def hawq_anchor(ctx: RunContext, budgets: dict[str, float], sens_cache: dict) -> np.ndarray | None:
    """HAWQ-V3's policy for these budgets, or None where it has none to give: it needs
    exactly one BitOPs or size budget besides FLOPs / parameter budgets (which fix the
    channels, by the global ranking at 8 bits), and an ILP that fits.

    ``sens_cache`` maps the FLOPs / parameter budgets to their channel counts and
    sensitivities: budgets that share a FLOPs level share the global ranking's bisection and
    the Hessian traces (about a minute each on two CPU cores)."""
    from seernet.compression.global_ranking import global_ranking_policy
    from seernet.compression.hawq import HESSIAN_BATCHES, PROBES, hawq_policy, pruned_sensitivity

    bit_kinds = [k for k in budgets if k in ("bitops", "size")]
    if len(bit_kinds) != 1 or not set(budgets) <= {"flops", "params", *bit_kinds}:
        return None
    pruning = {k: b for k, b in budgets.items() if k in ("flops", "params")}
    key = tuple(sorted(pruning.items()))
    try:
        if key not in sens_cache:
            channels = (
                global_ranking_policy(ctx.model, ctx.space, ctx.costs, pruning)[0].channels
                if pruning
                else ctx.space.full_policy().channels
            )
            # a minute or two without output otherwise
            print(f"refine: HAWQ anchor, Hessian traces ({HESSIAN_BATCHES} batches x {PROBES} probes) ...",
                  file=sys.stderr, flush=True)  # fmt: skip
            sens = pruned_sensitivity(
                ctx.model, ctx.space, ctx.splits.train, channels, loss=ctx.splits.task.criterion
            )
            sens_cache[key] = channels, sens
        channels, sens = sens_cache[key]
        return ctx.space.encode(hawq_policy(ctx.space, ctx.costs, channels, sens, budgets))
    except ValueError:  # the channel counts or the ILP cannot meet the budgets
        return None


def widest_activations(ctx: RunContext, policy: Policy, budgets: dict[str, float]) -> Policy:
    """``policy`` with every free layer's activations at the highest bit-width, if every budget
    still holds (a size or parameter budget does not count activation bits), else unchanged."""
    top = max(ctx.space.choices.bits)
    free = {ly.name for ly in ctx.space.free_layers}
    bits = {n: (w, top) if n in free else (w, a) for n, (w, a) in policy.bits.items()}
    raised = Policy(policy.channels, bits)
    return raised if fits(ctx, ctx.space.encode(raised)[None], budgets, None, None)[0] else policy


def ruled_out(out: Refined, x: np.ndarray, source: str) -> bool:
    """An anchor whose upper bound (mean + ``SKIP_Z`` std) is below the best measured
    policy is not worth a measurement; it is listed as skipped."""
    if not out.candidates:
        return False
    mean, std = predict(out.predictor, x)
    if mean + SKIP_Z * std >= out.best.measured:
        return False
    out.skipped.append((source, mean, std))
    return True


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
    starts: Iterable[tuple[np.ndarray, str]] | None = None,
    margin: float = MARGIN,
) -> Refined:
    """Known points, anchors, then trust-region rounds: up to ``n_evals`` measurements.

    ``starts``: the (policy, source) anchors to measure first (default: ``anchors(...)``;
    tests pass their own).
    """
    if n_evals < 1:
        raise ValueError(f"--refine needs at least 1 evaluation per budget, got {n_evals}")
    out = Refined(predictor=predictor, margin=margin)

    def consider(x: np.ndarray, source: str) -> bool:
        """Measure ``x`` unless stored; refit after a new measurement; False if it was known."""
        x = ctx.space.encode(ctx.space.decode(x))
        if any(np.array_equal(c.x, x) for c in out.candidates):  # e.g. the stored best is an anchor
            return False
        mean, std = predict(out.predictor, x)
        known = stored_accuracy(store, x)
        if known is not None:
            out.candidates.append(Candidate(x, mean, std, known, False, source))
            return False
        out.candidates.append(Candidate(x, mean, std, measure(x), True, source))
        out.predictor = fit(store.encoded, store.accuracy)
        return True

    row = best_stored(ctx, store, bset, fixed, values)
    if row is not None:
        consider(store.encoded[row], "store")
    fast = solve_fast(
        ctx, out.predictor, bset, fixed, values, (store.encoded, store.accuracy), seed
    )
    consider(fast.x, "solve")
    pending = iter(anchors(ctx, predictor, bset, fixed, values) if starts is None else starts)
    while out.evaluations < n_evals:  # an anchor is made only if a measurement is left for it
        nxt = next(pending, None)
        if nxt is None:
            break
        if ruled_out(out, *nxt):
            continue
        consider(*nxt)
    grid = Levels(ctx.space.levels())
    while out.evaluations < n_evals:
        if out.candidates:
            window = grid.window(out.best.x, TRUST_RADIUS)
            res = solve_one(ctx, out.predictor, bset, fixed, values, seed, levels=window)
        else:  # nothing measured within the budgets yet: the plain solve
            res = solve_one(ctx, out.predictor, bset, fixed, values, seed)
        if not consider(res.x, "trust-region" if len(out.candidates) else "solve"):
            break
    return out


def fit_predictor(ctx: RunContext, store: SampleStore, seed: int) -> Fit:
    """The refit used between rounds: ``fit-predictor``'s predictor on every stored sample."""
    from seernet.steps.fit import make_predictor, predictor_tables, val_images

    n_val = val_images(ctx, store.spec.protocol)
    tables = predictor_tables(ctx, store.spec.protocol)
    return lambda X, y: make_predictor(X, y, seed, n_val, tables)


def refined_document(
    ctx: RunContext, bset: BudgetSet, out: Refined, bits_mode: str, seconds: float
) -> dict:
    """The policy document of the incumbent, with every candidate's figures and source."""
    best = out.best
    res = SolveResult(
        best.x, best.predicted_mean, best.predicted_std, {}, bset.budgets, True, seconds
    )
    doc = policy_document(ctx, bset, res, bits_mode)
    doc["measured"] = {
        "val_accuracy": best.measured, "evaluations": out.evaluations, "strategy": REFINE_STRATEGY,
        "source": best.source, "margin": out.margin,
        "candidates": [{"encoded": [float(v) for v in c.x], "predicted_mean": c.predicted_mean,
                        "predicted_std": c.predicted_std, "measured": c.measured, "new": c.new,
                        "source": c.source} for c in out.candidates],
        "skipped": [{"source": src, "predicted_mean": m, "predicted_std": sd} for src, m, sd in out.skipped],
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
