"""The workspace's damage tables (``compression.sensitivity``), measured once and cached.

``collect`` measures them when its first active round starts (after the warm-up);
``fit-predictor`` and ``solve --refine`` read the cached file, measuring it only when a
store was collected before the tables existed (or the file is of an older version). A
solve never measures them.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from seernet.compression.protocol import Protocol
from seernet.compression.sensitivity import FORMAT, VERSION, DamageTable, measure_damage
from seernet.errors import UserError
from seernet.steps.backends import BackendConfig
from seernet.steps.context import RunContext
from seernet.workspace.artifacts import SENSITIVITY_NAME, write_json

KIND_PRUNE, KIND_WBITS, KIND_ABITS = 0, 1, 2


def damage_table(
    ctx: RunContext, protocol: Protocol, backend: BackendConfig | None = None, runner=None
) -> DamageTable:
    """The cached table of this workspace's space, measured (and written) if missing; with a
    parallel ``backend`` and its started ``runner``, its shares run on the runner's workers."""
    path = ctx.ws.path(SENSITIVITY_NAME)
    if path.is_file():
        try:
            obj = json.loads(path.read_text())
            older = (
                obj.get("format") == FORMAT
                and isinstance(obj.get("version"), int)
                and obj["version"] < VERSION
            )
            table = None if older else DamageTable.from_json(obj)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(
                f"{path} is not a readable sensitivity table ({exc}); delete it to re-measure"
            ) from exc
        if table is not None and table.fingerprint == ctx.space.fingerprint:
            return table
        why = "an older version" if table is None else "for another policy space"
        print(f"{path} is {why}: re-measuring", file=sys.stderr)
    print("measuring per-layer sensitivities (once per workspace) ...", file=sys.stderr)
    shares = {}
    if backend is not None and backend.parallel and runner is not None:
        fn = backend.damage_evaluator(ctx, protocol)
        shares = {
            "mapper": lambda chunks: runner.map_unordered(fn, chunks),
            "parts": runner.workers,
        }
    table = measure_damage(ctx.model, ctx.space, ctx.splits, protocol, ctx.device,
                           ctx.criterion(protocol.criterion), **shares)  # fmt: skip
    write_json(path, table.to_json())
    print(f"sensitivities: {table.seconds:.0f} s, saved to {path}", file=sys.stderr)
    return table


def coordinate_kinds(ctx: RunContext) -> np.ndarray:
    """Per coordinate of the codec's layout: pruning, weight bits or activation bits."""
    n_free = len(ctx.space.free_layers)
    return np.concatenate([np.full(ctx.space.n_groups, KIND_PRUNE), np.full(n_free, KIND_WBITS),
                           np.full(n_free, KIND_ABITS)])  # fmt: skip


# The residual GP sees the codes beside the damages at this weight (``PriorModel(code_weight)``);
# 0: damages only. 1 was a tie on the fast-solve bench (better on the 60-sample store, worse on
# the 200-sample one; docs/results.md), so it stays off.
GP_CODE_WEIGHT = 0.0


def prior_tables(ctx: RunContext, table: DamageTable) -> dict:
    """The ``PriorModel`` arguments (levels, damage, kinds) of this workspace.

    Damages add up (``PriorModel``'s exponents all 1). A learned exponent on the pruning
    damages (many groups pruned a little each costing less than their entries' sum) rated
    measured policies outside the store better (the anchors' median error +1.72 -> -0.02
    on the re-collected 200-sample store) but did not make the solver's answers better: 9 of
    12 cells within 0.3 of the best anchor instead of 7 on the 60-sample store, 6 instead of 9
    on the 200-sample one, whose worst cell fell to -13.7 (docs/results.md)."""
    return {"levels": table.levels, "damage": table.damage, "kinds": coordinate_kinds(ctx).tolist(),
            "code_weight": GP_CODE_WEIGHT}  # fmt: skip
