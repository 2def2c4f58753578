"""``solve``: budgets in user units -> one policy per budget, via barrier ascent on the predictor."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from search.levels import Levels
from search.solver import SolveResult, barrier_ascent
from seernet.errors import UserError
from seernet.space.policy_document import PolicyDocument, Prediction
from seernet.steps.context import RunContext
from seernet.units import Budget, format_bytes, format_count, format_ms
from seernet.workspace.artifacts import PREDICTOR_NAME, RANKING_NAME, STORE_NAME, TABLE_NAME

# latency (ms) is a budget only with a measured table (``seernet profile-latency``)
BUDGET_KINDS = {
    "flops": "count",
    "bitops": "count",
    "params": "count",
    "size": "bytes",
    "latency": "ms",
}
MIXED_BITOPS_FACTOR = 16  # BitOPs of uniform 4-bit weights and activations
# The solver maximizes mean - RISK * std: the predictor's std grows with the distance to
# measured policies, so this keeps answers where the prediction is backed by data.
RISK = 1.0
# The fast solve searches within TRUST_RADIUS levels per coordinate of each of the
# TRUST_CENTERS most accurate measured policies that fit the budgets (the frozen bit-widths
# imposed on them) and of the RANKING_CENTERS global-ranking allocations (Torch-Pruning's
# channel counts at one uniform bit-width, activations widened where the budgets allow, as
# refine's anchors) that the predictor rates highest, and returns what the predictor rates
# best among those searches.
# Why a trust region: searched over the whole space, the 60-sample store's answers at 30%
# FLOPs lay where no policy was measured and measured 3.9-13.9 points below the global
# ranking, each predicted within 2 std of 86-87%.
# Why the ranking's centres: the store's best policies within a budget can lie far below
# what the global ranking reaches (200-sample store, 50% FLOPs at 9x BitOPs: 86.78 measured
# against 89.50), and one level around them never got there. Measured in the 12 cells of
# benchmarks/bench_fast_solve.py with the same predictor, three store centres against one
# store and two ranking centres: answers >= the best anchor - 0.3 in 5 -> 6 cells, worst
# gap -4.14 -> -1.54 (200-sample store); 5 -> 7 cells, worst -3.90 -> -2.96 (60 samples).
TRUST_RADIUS = 1
TRUST_CENTERS = 1
RANKING_CENTERS = 2
# The global ranking's channel counts are cached per workspace on this grid of global
# pruning ratios (``RANKING_NAME``): computing them costs about a second per budget and
# bit-width, a solve must take about a second in all.
RANKING_STEP = 0.01
# A window of one level around a centre is a small box: the barrier ascent needs fewer
# starts and steps there than over the whole space (the solver's defaults, 32 x 100).
WINDOW_STARTS, WINDOW_STEPS = 16, 60
RANKING_FORMAT, RANKING_VERSION = "seernet.ranking", 1


def format_cost(name: str, value: float) -> str:
    kind = BUDGET_KINDS.get(name)
    return (
        format_bytes(value)
        if kind == "bytes"
        else format_ms(value)
        if kind == "ms"
        else format_count(value)
    )


def attach_latency(ctx: RunContext, required: bool):  # a LatencyTable or None
    """Give ``ctx.costs`` the workspace's latency table.

    ``required`` (a latency budget was given): a missing or foreign table is a UserError.
    Otherwise the table is used when valid (for the predicted-latency column), else ignored.
    """
    from seernet.latency.table import load_table
    from seernet.space.costs import CostModel

    path = ctx.ws.path(TABLE_NAME)
    if not required and not path.is_file():
        return None
    try:
        table = load_table(path, ctx.space)
    except UserError:
        if required:
            raise
        return None
    ctx.__dict__["costs"] = CostModel(
        ctx.space, latency=table
    )  # replaces the cached, table-less model
    return table


def load_predictor(ctx: RunContext):  # a PriorModel
    """The workspace's predictor, refused if it was fitted for another space."""
    from predictor.prior_model import PriorModel

    path = ctx.ws.path(PREDICTOR_NAME)
    if not path.is_file():
        raise UserError(f"no predictor in {ctx.ws.root}: run 'seernet fit-predictor' first")
    try:
        model, meta = PriorModel.load(path)
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        raise UserError(
            f"{path} is not a readable seernet predictor ({exc}); rerun 'seernet fit-predictor'"
        ) from exc
    if meta.get("space_fingerprint") != ctx.space.fingerprint:
        raise UserError(
            f"{path} was fitted for policy space {meta.get('space_fingerprint')}, this workspace's is "
            f"{ctx.space.fingerprint}: rerun 'seernet fit-predictor'"
        )
    return model


@dataclass
class BudgetSet:
    """One solve: absolute budget per cost name, and a name for its policy file."""

    budgets: dict[str, float]
    name: str
    derived: dict[str, str]  # cost name -> how it was derived (printed as a note)
    given: dict[str, str] = field(
        default_factory=dict
    )  # cost name -> the budget as the user wrote it


def resolve_budgets(
    ctx: RunContext, given: dict[str, list[Budget]], pareto: int | None, mixed: bool
) -> list[BudgetSet]:
    """Broadcast per-flag lists into budget sets; add the mixed-precision BitOPs default."""
    full = ctx.costs.unpruned()
    if pareto:
        lo = ctx.costs.flops(torch.as_tensor(solve_grid(ctx).lower)[None]).item()
        given = {
            "flops": [
                Budget(f"pareto{i}", value=v)
                for i, v in enumerate(np.linspace(lo * 1.05, full["flops"] * 0.95, pareto))
            ]
        }
    lengths = {len(v) for v in given.values()}
    if not given:
        raise UserError(
            "give at least one budget: --flops, --bitops, --params, --size, --latency or --pareto K"
        )
    if len(lengths - {1}) > 1:
        raise UserError("budget lists must have equal lengths (or one value that applies to all)")
    n = max(lengths)
    sets = []
    for i in range(n):
        picked = {k: v[i if len(v) > 1 else 0] for k, v in given.items()}
        budgets = {k: b.resolve(full[k]) for k, b in picked.items()}
        derived = {}
        if mixed and "flops" in budgets and "bitops" not in budgets and "size" not in budgets:
            budgets["bitops"] = budgets["flops"] * MIXED_BITOPS_FACTOR
            derived["bitops"] = f"FLOPs budget x {MIXED_BITOPS_FACTOR} (as costly as uniform 4-bit)"
        name = "_".join(f"{k}-{format_cost(k, b)}" for k, b in budgets.items() if k not in derived)
        texts = {k: b.text for k, b in picked.items()}
        sets.append(BudgetSet(budgets, name + ("_mixed" if mixed else ""), derived, texts))
    return sets


def bits_mask(ctx: RunContext, bits: int | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Freeze every bit-width coordinate at ``bits`` (``--bits N``); None = search them."""
    if bits is None:
        return None, None
    try:
        return ctx.space.bits_mask(bits)
    except ValueError as exc:
        raise UserError(f"--bits {exc}") from exc


def solve_context(ctx: RunContext, multiple: int | None) -> RunContext:
    """``ctx`` for a solve restricted to kept counts that are multiples of ``multiple``
    (``solve --channel-multiple``): a shallow copy (the same model, space and costs), so the
    caller's context keeps the whole space."""
    if multiple is None:
        return ctx
    space_n = ctx.space.choices.channel_multiple
    if multiple < 1:
        raise UserError(f"--channel-multiple must be at least 1, got {multiple}")
    if multiple % space_n and space_n % multiple:
        raise UserError(
            f"--channel-multiple {multiple} does not fit this workspace's space (collected with "
            f"--channel-multiple {space_n}): use a multiple of {space_n}"
        )
    out = copy.copy(ctx)
    out.channel_multiple = math.lcm(multiple, space_n)
    return out


def solve_grid(ctx: RunContext) -> Levels:
    """The levels a solve searches: the space's, less the kept counts that are not multiples
    of ``ctx.channel_multiple`` (full counts stay)."""
    return Levels(ctx.space.levels(ctx.channel_multiple))


def multiple_note(ctx: RunContext) -> str:
    """Why the smallest model is larger than the space's, when a solve restricts the counts."""
    n = ctx.channel_multiple
    return "" if n <= ctx.space.choices.channel_multiple else f" with --channel-multiple {n}"


def solved_multiple(ctx: RunContext) -> int:
    """Every kept count a solve returns is a multiple of this, or a group's full count."""
    return math.lcm(ctx.channel_multiple, ctx.space.choices.channel_multiple)


def on_grid(ctx: RunContext, centers: list[np.ndarray], budgets: dict[str, float], fixed,
            values) -> list[np.ndarray]:  # fmt: skip
    """Trust-region centres rounded down onto the solve's grid (no cost grows, so they still
    fit, except where a count lies below the grid's smallest); those that fit, once each."""
    grid, out = solve_grid(ctx), []
    for c in centers:
        x = grid.floor(c)
        fresh = not any(np.array_equal(x, o) for o in out)
        if fresh and fits(ctx, x[None], budgets, fixed, values)[0]:
            out.append(x)
    return out


def cheap_corners(ctx: RunContext, fixed, values) -> np.ndarray:
    """(2, D): the solve grid's lower corner, and its fewest channels at the top bits. ORT
    latency falls as inputs rise to 8 bits, so its cheapest model is the second; every
    other cost's is the first."""
    grid = solve_grid(ctx)
    k = ctx.space.n_groups
    corners = np.stack([grid.lower, np.concatenate([grid.lower[:k], grid.upper[k:]])])
    return corners if fixed is None else np.where(fixed, values, corners)


def check_attainable(ctx: RunContext, budgets: dict[str, float], fixed, values) -> None:
    """A budget below the smallest model the space allows is a clear user error."""
    x = torch.as_tensor(cheap_corners(ctx, fixed, values))
    for k, b in budgets.items():
        smallest = ctx.costs.functions()[k](x).min().item()
        if smallest > b:
            raise UserError(
                f"{k} budget {format_cost(k, b)} is below the smallest model this space allows "
                f"({format_cost(k, smallest)}{multiple_note(ctx)}); raise the budget"
            )


def solve_one(
    ctx: RunContext,
    predictor,
    bset: BudgetSet,
    fixed,
    values,
    seed: int = 0,
    levels: Levels | None = None,
    center: np.ndarray | None = None,
) -> SolveResult:
    """Barrier ascent on the predictor under ``bset``'s budgets, over ``levels`` (default:
    the whole space; ``solve --refine`` passes a trust region around a measured policy,
    ``center``, which fits: where a cost is not monotone, the window grows from it)."""
    check_attainable(ctx, bset.budgets, fixed, values)
    fns = ctx.costs.functions()
    costs = {k: fns[k] for k in bset.budgets}
    size = {} if levels is None else {"starts": WINDOW_STARTS, "steps": WINDOW_STEPS}
    floors = cheap_corners(ctx, fixed, values)
    if center is not None:
        floors = np.concatenate([center[None], floors])
    return barrier_ascent(
        predictor.mean_std_torch, costs, bset.budgets, levels or solve_grid(ctx),
        fixed=fixed, fixed_values=values, seed=seed, risk=RISK, floors=floors, **size,
    )  # fmt: skip


def predict(predictor: object, x: np.ndarray) -> tuple[float, float]:
    """The predictor's mean and std for one encoded policy."""
    with torch.no_grad():
        mean, std = predictor.mean_std_torch(
            torch.as_tensor(np.asarray(x, dtype=np.float64))[None].float()
        )
    return float(mean.reshape(-1)[0]), float(std.reshape(-1)[0])


def fits(ctx: RunContext, X: np.ndarray, budgets: dict[str, float], fixed, values) -> np.ndarray:
    """Which rows of ``X`` meet every budget and agree with the frozen coordinates."""
    fns = ctx.costs.functions()
    xt = torch.as_tensor(np.asarray(X, dtype=np.float64))
    ok = np.ones(len(X), dtype=bool)
    for k, b in budgets.items():
        ok &= fns[k](xt).reshape(-1).numpy() <= b * (1 + 1e-9)
    if fixed is not None:
        ok &= np.all(np.isclose(X[:, fixed], values[fixed]), axis=1)
    return ok


def trust_centers(ctx: RunContext, X: np.ndarray, y: np.ndarray, budgets: dict[str, float],
                  fixed, values) -> list[np.ndarray]:  # fmt: skip
    """The most accurate measured policies, frozen bits imposed, that fit the budgets."""
    P = X if fixed is None else np.where(fixed, values, X)
    ok = fits(ctx, P, budgets, fixed, values)
    centers: list[np.ndarray] = []
    for i in np.flatnonzero(ok)[np.argsort(-y[ok], kind="stable")]:
        if not any(np.array_equal(P[i], c) for c in centers):
            centers.append(P[i])
        if len(centers) == TRUST_CENTERS:
            break
    return centers


def ranking_table(ctx: RunContext) -> np.ndarray:
    """(R, groups) channel counts of Torch-Pruning's global ranking at the global pruning
    ratios 0, ``RANKING_STEP``, ... up to ``max_prune``, each snapped up to a valid level;
    read from the workspace's cache, computed (and cached) when missing or stale."""
    import json

    from seernet.compression.global_ranking import kept_counts, snapped
    from seernet.workspace.artifacts import write_json

    path = ctx.ws.path(RANKING_NAME)
    key = {"format": RANKING_FORMAT, "version": RANKING_VERSION, "step": RANKING_STEP,
           "fingerprint": ctx.space.fingerprint, "weights": str(ctx.config.weights)}  # fmt: skip
    if path.is_file():
        try:
            obj = json.loads(path.read_text())
            if all(obj.get(k) == v for k, v in key.items()):
                return np.asarray(obj["kept"], dtype=np.float64)
        except (ValueError, KeyError, TypeError):
            pass  # unreadable: computed again below
    ratios = np.arange(0.0, ctx.space.choices.max_prune + 1e-9, RANKING_STEP)
    names = [g.name for g in ctx.space.groups]
    top = max(ctx.space.choices.bits)
    policies = [
        snapped(ctx.space, kept_counts(ctx.model, ctx.space, float(r)), top) for r in ratios
    ]
    kept = [[p.channels[n] for n in names] for p in policies]
    write_json(path, {**key, "ratios": ratios.tolist(), "kept": kept})
    return np.asarray(kept, dtype=np.float64)


def ranking_centers(ctx: RunContext, predictor, budgets: dict[str, float], fixed, values,
                    table: np.ndarray | None = None) -> list[np.ndarray]:  # fmt: skip
    """The global ranking at each uniform bit-width: the least pruned cached allocation
    that meets the budgets, activations widened where they still do, kept if it agrees with
    the frozen bits; the ``RANKING_CENTERS`` the predictor rates highest."""
    table = ranking_table(ctx) if table is None else table
    space, found = ctx.space, []
    widest = space.encode_bits(max(space.choices.bits))
    act = np.zeros(space.dim, dtype=bool)
    act[space.n_groups + len(space.free_layers) :] = True
    for bits in space.choices.bits:
        X = space.encode_uniform(table, bits)
        ok = np.flatnonzero(fits(ctx, X, budgets, None, None))
        if ok.size == 0:
            continue
        x = X[ok[0]]
        wide = np.where(act, widest, x)
        x = wide if fits(ctx, wide[None], budgets, None, None)[0] else x
        if fits(ctx, x[None], budgets, fixed, values)[0]:
            found.append(x)
    if len(found) > RANKING_CENTERS:
        with torch.no_grad():
            mean, std = predictor.mean_std_torch(torch.as_tensor(np.stack(found)))
        order = np.argsort(-(mean - RISK * std).numpy(), kind="stable")
        found = [found[i] for i in order[:RANKING_CENTERS]]
    return found


def fast_centers(
    ctx: RunContext, predictor, bset: BudgetSet, fixed, values, stored
) -> list[np.ndarray]:
    """The fast solve's window centres: the best measured policies that fit (``stored`` =
    the store's encoded policies and accuracies), then the best-rated global-ranking
    allocations; on the solve's grid (``--channel-multiple``), each once."""
    centers = trust_centers(ctx, *stored, bset.budgets, fixed, values)
    for c in ranking_centers(ctx, predictor, bset.budgets, fixed, values):
        if not any(np.array_equal(c, o) for o in centers):
            centers.append(c)
    if ctx.channel_multiple > 1:
        centers = on_grid(ctx, centers, bset.budgets, fixed, values)
    return centers


def solve_fast(
    ctx: RunContext, predictor, bset: BudgetSet, fixed, values, stored, seed: int = 0
) -> SolveResult:
    """``solve`` without ``--refine``: the best-rated policy within ``TRUST_RADIUS`` levels
    of the ``fast_centers``."""
    centers = fast_centers(ctx, predictor, bset, fixed, values, stored)
    if not centers:
        res = solve_one(ctx, predictor, bset, fixed, values, seed)
        res.note = "no measured policy fits these budgets: searched the whole space"
        return res
    grid = solve_grid(ctx)
    found = [solve_one(ctx, predictor, bset, fixed, values, seed, grid.window(c, TRUST_RADIUS), c)
             for c in centers]  # fmt: skip
    best = max(found, key=lambda r: r.mean - RISK * r.std)
    best.seconds = sum(r.seconds for r in found)
    return best


def policy_document(
    ctx: RunContext, bset: BudgetSet, res: SolveResult, bits_mode: str
) -> PolicyDocument:
    """Everything about one solved policy, as written to ``policies/<name>.json``."""
    policy = ctx.space.decode(res.x)
    table = ctx.costs.latency_table
    return PolicyDocument(
        name=bset.name, model=ctx.config.model, space_fingerprint=ctx.space.fingerprint,
        bits_mode=bits_mode, budgets=bset.budgets, budgets_as_given=bset.given,
        derived_budgets=bset.derived, channel_multiple=solved_multiple(ctx),
        costs=ctx.costs.of_policy(policy), unpruned=ctx.costs.unpruned(),
        predicted=Prediction(res.mean, res.std), solve_seconds=res.seconds, note=res.note,
        policy=policy, encoded=[float(v) for v in ctx.space.encode(policy)],
        latency_table=latency_settings(table) if table else None,
    )  # fmt: skip


def latency_settings(table) -> dict:  # a LatencyTable
    """Where and how the predicted latency was measured (it means nothing without this)."""
    settings = {"device": table.device, "threads": table.threads, "batch_size": table.batch_size,
                "runtime": table.runtime, "kernels": table.kernels}  # fmt: skip
    if table.runtime == "onnxruntime":
        settings["qdq_residuals"] = table.qdq_residuals
    return settings


def verify(
    ctx: RunContext, docs: list[PolicyDocument], seed: int = 0
) -> list[tuple[str, float, float, float]]:
    """Measure solved policies with the store's protocol; append each (strategy ``verify``)."""
    from seernet.compression.protocol import Protocol
    from seernet.steps.collect import Measurer
    from seernet.workspace.store import SampleStore

    store = SampleStore.open(ctx.ws.path(STORE_NAME), fingerprint=ctx.space.fingerprint)
    protocol = Protocol(**store.spec.protocol)
    measurer = Measurer(ctx, store, protocol, allow_duplicate=True)
    rows = []
    try:
        for doc in docs:
            acc = measurer.measure(np.asarray(doc.encoded), "verify", 0)
            rows.append((doc.name, doc.predicted.mean, doc.predicted.std, acc))
    finally:
        store.close()
    return rows
