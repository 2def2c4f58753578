"""What a user of Torch-Pruning or HAWQ-V3 already gets at a budget: the anchors that
``solve --refine`` measures (and never returns a policy below) and that the benchmarks
compare the fast solve with.

- Torch-Pruning's global ranking (``seernet.compression.global_ranking``) at each uniform
  bit-width that meets the budgets, activations widened where they still fit.
- HAWQ-V3's allocation (``seernet.compression.hawq``: Hessian-trace sensitivity, ILP) on
  the global ranking's channels, under one BitOPs or weight-size budget.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np

from seernet.space.policy import Policy
from seernet.steps.context import RunContext
from seernet.steps.solve import BudgetSet, fits, predict

ANCHORS = 2  # global-ranking bit-widths measured per budget (the best predicted ones)


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
