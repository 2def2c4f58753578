"""``legr``: learn LeGR's per-group affine transform once, then one policy per FLOPs budget.

The pure algorithm is ``search.legr``; this module supplies what it needs from the
workspace: base scores from the base model's Torch-Pruning groups, the FLOPs (MAC)
cost of keep counts, the space's allowed keep counts, and a fitness that measures the
model pruned at the target budget with the evaluation protocol (``evaluate_policy``).
The learned parameters live in ``WORKDIR/legr.json`` with the space's fingerprint.

Base score of a channel: its combined squared L2 norm over every coupled member of
the group (Torch-Pruning's ``GroupMagnitudeImportance(p=2)``, the ``l2`` criterion),
L2-normalized per group. Fitness prunes with the ``l2`` criterion because LeGR's
transform (alpha > 0) orders channels inside a group exactly as that norm does.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from search.legr import (
    AffineParams,
    BudgetTooSmall,
    EvolutionConfig,
    GlobalRanking,
    aging_evolution,
)
from seernet.compression.protocol import Protocol, evaluate_policy
from seernet.errors import UserError
from seernet.space.graph import named_groups
from seernet.space.policy import Policy, PolicySpace
from seernet.space.policy_document import PolicyDocument
from seernet.steps.context import RunContext
from seernet.units import format_count
from seernet.workspace.artifacts import LEGR_NAME
from seernet.workspace.folder import Workspace

FITNESS_CRITERION = "l2"  # within a group, LeGR's order is the combined L2 norm's order


def group_importance():  # a Torch-Pruning importance
    """Combined squared L2 norm per channel over a group's coupled members."""
    from seernet.tp import tp

    return tp.importance.GroupMagnitudeImportance(p=2)


def base_scores(model: nn.Module, space: PolicySpace) -> list[np.ndarray]:
    """Per-channel base scores of every group of ``space``, in the space's group order."""
    model = copy.deepcopy(model).cpu().eval()
    _, groups = named_groups(model, space.input_shape)
    imp = group_importance()
    with torch.no_grad():
        found = {name: imp(group).double().cpu().numpy() for name, group in groups}
    missing = [g.name for g in space.groups if g.name not in found]
    if missing:
        raise UserError(
            f"the base model has no channel group {missing[0]!r} of the policy space: wrong weights?"
        )
    return [found[g.name] for g in space.groups]


def keep_to_encoded(ctx: RunContext, keep: np.ndarray, bits: int) -> np.ndarray:
    """(N, G) keep counts and uniform ``bits`` -> (N, D) encoded policies."""
    return ctx.space.encode_uniform(keep, bits)


def make_policy(space: PolicySpace, keep: np.ndarray, bits: int) -> Policy:
    """Keep counts per group, ``bits`` on every free layer (fixed layers keep theirs)."""
    fixed = space.choices.fixed_bits
    return Policy(
        {g.name: int(k) for g, k in zip(space.groups, keep, strict=True)},
        {ly.name: (fixed, fixed) if ly.fixed_bits else (bits, bits) for ly in space.quant_layers},
    )


def global_ranking(ctx: RunContext, bits: int) -> GlobalRanking:
    """The workspace's base scores, allowed keep counts and FLOPs cost."""
    flops = ctx.costs.flops

    def cost(keep: np.ndarray) -> np.ndarray:
        return flops(torch.as_tensor(keep_to_encoded(ctx, keep, bits))).numpy()

    return GlobalRanking(
        base_scores(ctx.model, ctx.space), [g.keep for g in ctx.space.groups], cost
    )


def default_bits(space: PolicySpace) -> int:
    """8 bits (pruning only) when the space allows it, else its widest choice."""
    return 8 if 8 in space.choices.bits else space.choices.bits[-1]


def keep_for_budget(ranking: GlobalRanking, params: AffineParams, budget: float) -> np.ndarray:
    """``ranking.keep_counts`` with a budget below the smallest model as a UserError."""
    try:
        return ranking.keep_counts(params, budget)
    except BudgetTooSmall as exc:
        raise UserError(
            f"FLOPs budget {format_count(budget)} is below the smallest model this space allows "
            f"({format_count(exc.smallest)}); raise the budget"
        ) from exc


@dataclass
class LegrSettings:
    """One LeGR search: the FLOPs fraction the fitness prunes to, bits, evolution, protocol."""

    target: float = 0.5  # absolute FLOPs when > 1, else a fraction of the unpruned model
    bits: int | None = None  # None = default_bits(space)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    protocol: Protocol = field(default_factory=lambda: Protocol(criterion=FITNESS_CRITERION))

    def target_flops(self, unpruned: float) -> float:
        return self.target if self.target > 1 else self.target * unpruned


def learn(ctx: RunContext, settings: LegrSettings, progress: bool = True) -> dict:
    """Evolve the affine parameters; the ``legr.json`` document (``seconds`` = all wall time)."""
    bits = settings.bits or default_bits(ctx.space)
    start = time.perf_counter()
    ranking = global_ranking(ctx, bits)
    full = ctx.costs.unpruned()["flops"]
    budget = settings.target_flops(full)
    keep_for_budget(
        ranking, AffineParams.identity(ranking.n_groups), budget
    )  # refuse before measuring
    measured: dict[tuple[int, ...], float] = {}  # parameters that prune alike are measured once
    criterion = ctx.criterion(settings.protocol.criterion)

    def fitness(params: AffineParams) -> float:
        keep = tuple(int(k) for k in ranking.keep_counts(params, budget))
        if keep not in measured:
            policy = make_policy(ctx.space, np.array(keep), bits)
            measured[keep] = evaluate_policy(
                ctx.model, ctx.space, policy, ctx.splits, settings.protocol, ctx.device, criterion
            )[0]
        return measured[keep]

    cfg = settings.evolution
    with tqdm(total=cfg.evaluations, desc=f"legr (target {format_count(budget)} FLOPs)", unit="eval",
              dynamic_ncols=True, disable=not progress) as bar:  # fmt: skip

        def on_evaluation(i: int, value: float, best: float) -> None:
            bar.update(1)
            bar.set_postfix(
                last=f"{value:.2f}", best=f"{best:.2f}", measured=len(measured), refresh=False
            )

        res = aging_evolution(ranking.n_groups, fitness, cfg, ranking.score_scale, on_evaluation)
    seconds = time.perf_counter() - start
    names = [g.name for g in ctx.space.groups]
    return {
        "method": "legr", "model": ctx.config.model, "space_fingerprint": ctx.space.fingerprint,
        "target_flops": budget, "target_fraction": budget / full, "bits": bits,
        "protocol": settings.protocol.to_json(), "evolution": asdict(cfg),
        "alpha": dict(zip(names, map(float, res.best.alpha), strict=True)),
        "kappa": dict(zip(names, map(float, res.best.kappa), strict=True)),
        "best_fitness": res.best_fitness, "identity_fitness": res.history[0][1],
        "evaluations": len(res.history), "measured_policies": len(measured), "seconds": seconds,
        "history": [f for _, f in res.history],
    }  # fmt: skip


def params_of(doc: dict, space: PolicySpace) -> AffineParams:
    """The affine parameters of a ``legr.json`` document, in the space's group order."""
    try:
        return AffineParams(np.array([doc["alpha"][g.name] for g in space.groups], dtype=np.float64),
                            np.array([doc["kappa"][g.name] for g in space.groups], dtype=np.float64))  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(
            f"{LEGR_NAME} lacks parameters for this space ({exc}); rerun 'seernet legr --relearn'"
        ) from exc


def load(ws: Workspace, fingerprint: str) -> dict | None:
    """The workspace's ``legr.json``, None if absent; another space's file is refused."""
    path = ws.path(LEGR_NAME)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        found = doc["space_fingerprint"]
    except (json.JSONDecodeError, OSError, KeyError, TypeError) as exc:
        raise UserError(
            f"{path} is not a readable LeGR file ({exc}); rerun 'seernet legr --relearn'"
        ) from exc
    if found != fingerprint:
        raise UserError(f"{path} was learned for policy space {found}, this workspace's is {fingerprint}: "
                        "rerun 'seernet legr --relearn'")  # fmt: skip
    return doc


def policy_documents(
    ctx: RunContext, learned: dict, budgets: list[float], bits: int | None = None
) -> list[PolicyDocument]:
    """One policy document per FLOPs budget, in ``solve``'s format (readable by ``compress``)."""
    bits = bits or default_bits(ctx.space)
    if bits not in ctx.space.choices.bits:
        raise UserError(
            f"--bits {bits} is not one of this space's bit-widths {list(ctx.space.choices.bits)}"
        )
    ranking = global_ranking(ctx, bits)
    params = params_of(learned, ctx.space)
    keeps = [
        keep_for_budget(ranking, params, b) for b in budgets
    ]  # every budget checked before any is used
    note = f"LeGR global ranking learned at {100 * learned['target_fraction']:.0f}% FLOPs; no predictor involved"
    suffix = "" if bits == 8 else f"_{bits}bit"
    docs = []
    for budget, keep in zip(budgets, keeps, strict=True):
        policy = make_policy(ctx.space, keep, bits)
        docs.append(PolicyDocument(
            name=f"legr_flops-{format_count(budget)}{suffix}", model=ctx.config.model,
            space_fingerprint=ctx.space.fingerprint, bits_mode=f"{bits}-bit", method="legr",
            budgets={"flops": budget}, costs=ctx.costs.of_policy(policy),
            unpruned=ctx.costs.unpruned(), predicted=None, note=note,
            policy=policy, encoded=[float(v) for v in ctx.space.encode(policy)],
        ))  # fmt: skip
    return docs


def write_policies(ctx: RunContext, docs: list[PolicyDocument]) -> list[PolicyDocument]:
    """Write every document to ``policies/<name>.json`` as ``solve`` does; them with their paths."""
    return [doc.save(ctx.ws) for doc in docs]
