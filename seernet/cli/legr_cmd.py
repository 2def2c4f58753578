"""``seernet legr``: learn LeGR's global filter ranking once, then a policy per FLOPs budget."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seernet.space.policy_document import PolicyDocument

HELP = (
    "LeGR: learn one global filter ranking by evolution, then prune to every FLOPs (MACs) budget "
    "(policies in solve's format, for 'seernet compress')"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from search.legr import EvolutionConfig
    from seernet.cli.common import (
        add_json_argument,
        add_run_arguments,
        add_seed_argument,
        add_setting,
    )
    from seernet.compression.protocol import Protocol

    ev, pr = EvolutionConfig(), Protocol()
    add_run_arguments(p)
    p.add_argument(
        "--flops", help="FLOPs (MACs) budgets of the policies, e.g. 30%%,50%%,70%% or 20M"
    )
    p.add_argument(
        "--bits",
        type=int,
        help="uniform weight/activation bits of the policies (default: 8, pruning only)",
    )
    add_json_argument(p)
    g = p.add_argument_group("search (only when legr.json is learned)")
    g.add_argument(
        "--target",
        default="50%",
        help="FLOPs the fitness prunes to while learning (default: %(default)s)",
    )
    add_setting(g, ev, "population", "members of the aging population")
    add_setting(g, ev, "sample", "members compared to pick a parent")
    add_setting(g, ev, "evaluations", "fitness evaluations in all, the initial population included")
    add_seed_argument(g, ev.seed, "the evolution and the evaluation protocol")
    g.add_argument(
        "--relearn", action="store_true", help="learn again even if the workspace has legr.json"
    )
    add_setting(g, pr, "finetune_steps", "QAT steps per fitness evaluation")
    add_setting(g, pr, "bn_batches", "adaptive-BN batches")
    add_setting(g, pr, "val_limit", "score on the first N val images", type=int, shown="all")


def _settings(args: argparse.Namespace):  # LegrSettings and the parsed budgets
    from search.legr import EvolutionConfig
    from seernet.cli.common import make_settings
    from seernet.compression.protocol import Protocol
    from seernet.errors import UserError
    from seernet.steps.legr import FITNESS_CRITERION, LegrSettings
    from seernet.units import parse_budget, parse_budget_list

    budgets = parse_budget_list(args.flops, "count", "--flops") if args.flops else []
    target = parse_budget(args.target, "count", "--target")
    if target.fraction is not None and target.fraction >= 1:
        raise UserError(f"--target {args.target!r}: the fitness must prune, use less than 100%")
    evolution = make_settings(
        EvolutionConfig, args.population, args.sample, args.evaluations, seed=args.seed
    )
    protocol = make_settings(
        Protocol,
        args.bn_batches,
        args.finetune_steps,
        val_limit=args.val_limit,
        criterion=FITNESS_CRITERION,
        seed=args.seed,
    )
    return LegrSettings(
        target.fraction if target.fraction is not None else target.value,
        args.bits,
        evolution,
        protocol,
    ), budgets


def run(args: argparse.Namespace) -> int:
    import json

    from seernet.cli.common import open_run
    from seernet.device import resolve_device
    from seernet.errors import UserError
    from seernet.space.policy import SpaceChoices
    from seernet.steps.context import RunContext, record_space
    from seernet.steps.legr import (
        default_bits,
        learn,
        load,
        policy_documents,
        write_policies,
    )
    from seernet.workspace.artifacts import LEGR_NAME, write_json

    settings, budgets = _settings(args)  # malformed options fail before anything is written
    ws, config = open_run(args)
    ctx = RunContext(ws, config, resolve_device(args.device))
    if not config.space:
        record_space(ctx, SpaceChoices())  # as the first 'collect' would
    bits = args.bits or default_bits(ctx.space)
    if bits not in ctx.space.choices.bits:
        raise UserError(
            f"--bits {bits} is not one of this space's bit-widths {list(ctx.space.choices.bits)}"
        )
    full = ctx.costs.unpruned()["flops"]
    absolute = [b.resolve(full) for b in budgets]
    learned = None if args.relearn else load(ws, ctx.space.fingerprint)
    if learned is None:
        if absolute:  # a budget below the smallest model fails before the search, not after
            _check_budgets(ctx, absolute, bits)
        learned = learn(ctx, settings, progress=not args.json)
        write_json(ws.path(LEGR_NAME), learned)
        status = f"learned {ws.path(LEGR_NAME)}"
    else:
        status = f"reused {ws.path(LEGR_NAME)} (learned at {100 * learned['target_fraction']:.0f}% FLOPs; --relearn to learn again)"
    docs = write_policies(ctx, policy_documents(ctx, learned, absolute, bits))
    if args.json:
        policies = [d.to_json(with_path=True) for d in docs]
        print(json.dumps({"legr": learned, "policies": policies}, indent=2))
    else:
        print(render(ctx, learned, docs, status))
    return 0


def _check_budgets(ctx, budgets: list[float], bits: int) -> None:
    """Refuse unattainable budgets with the identity ranking (no evaluation needed)."""
    from search.legr import AffineParams
    from seernet.steps.legr import global_ranking, keep_for_budget

    ranking = global_ranking(ctx, bits)
    for b in budgets:
        keep_for_budget(ranking, AffineParams.identity(ranking.n_groups), b)


def render(ctx, learned: dict, docs: list[PolicyDocument], status: str) -> str:
    """The search's outcome and one table row per policy."""
    from seernet.tables import format_table
    from seernet.units import format_count

    full = ctx.costs.unpruned()
    lines = [
        status,
        f"fitness (val %, pruned to {format_count(learned['target_flops'])} FLOPs): best {learned['best_fitness']:.2f}, "
        f"plain global L2 ranking {learned['identity_fitness']:.2f}; {learned['evaluations']} evaluations "
        f"({learned['measured_policies']} distinct policies measured) in {learned['seconds']:.1f} s",
    ]
    rows = []
    for d in docs:
        c = d.costs
        kept = sum(d.policy.channels.values())
        total = sum(g.channels for g in ctx.space.groups)
        rows.append(
            [
                format_count(d.budgets["flops"]),
                format_count(c["flops"]),
                f"{100 * c['flops'] / full['flops']:.1f}%",
                format_count(c["params"]),
                f"{kept}/{total}",
                d.bits_mode,
                str(d.path),
            ]
        )
    if rows:
        lines.append(
            format_table(
                ["budget", "FLOPs", "of unpruned", "params", "channels kept", "bits", "policy"],
                rows,
            )
        )
    return "\n".join(lines)
