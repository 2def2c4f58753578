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

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from search.levels import Levels
from seernet.steps.budget_anchors import anchors
from seernet.steps.context import RunContext
from seernet.steps.solve import TRUST_RADIUS, BudgetSet, fits, predict, solve_fast, solve_one
from seernet.workspace.store import SampleStore

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


def best_stored(ctx: RunContext, store: SampleStore, bset: BudgetSet, fixed, values) -> int | None:
    """Row of the most accurate stored sample within the budgets (None: no such sample)."""
    if not len(store):
        return None
    ok = fits(ctx, store.encoded, bset.budgets, fixed, values)
    return int(np.flatnonzero(ok)[store.accuracy[ok].argmax()]) if ok.any() else None


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
            res = solve_one(ctx, out.predictor, bset, fixed, values, seed, window, out.best.x)
        else:  # nothing measured within the budgets yet: the plain solve
            res = solve_one(ctx, out.predictor, bset, fixed, values, seed)
        if not consider(res.x, "trust-region" if len(out.candidates) else "solve"):
            break
    return out
