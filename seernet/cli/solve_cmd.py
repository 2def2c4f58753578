"""``seernet solve``: a policy per budget by barrier gradient ascent on the predictor."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seernet.space.policy_document import PolicyDocument

HELP = (
    "find the policy with the highest predicted accuracy under each budget "
    "(FLOPs = MACs; BitOPs = MACs x weight bits x activation bits)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.cli.common import (
        add_device_argument,
        add_json_argument,
        add_seed_argument,
        add_workdir_argument,
    )

    add_workdir_argument(p)
    p.add_argument("--flops", help="FLOPs (MACs) budgets, e.g. 150M or 10M,15M,20M or 50%%")
    p.add_argument("--bitops", help="BitOPs budgets, e.g. 2G or 25%%")
    p.add_argument("--params", help="parameter budgets, e.g. 150K or 50%%")
    p.add_argument("--size", help="model size budgets in bytes, e.g. 100KB, 1.5MB or 30%%")
    p.add_argument(
        "--latency",
        help="latency budgets from the table 'seernet profile-latency' measured (torch: the pruned "
        "float model; --runtime onnxruntime: the QDQ model in ORT), e.g. 3ms, 800us or 60%%; "
        "bits do not change it in either runtime",
    )
    p.add_argument("--pareto", type=int, help="K FLOPs budgets spread over the attainable range")
    p.add_argument(
        "--bits",
        default="mixed",
        help="'mixed' searches per-layer bits; N fixes every layer at N bits (default: %(default)s)",
    )
    p.add_argument(
        "--channel-multiple",
        type=int,
        metavar="N",
        help="every pruned group keeps a multiple of N channels (or all), e.g. 8 or 16 for CPU "
        "kernels; chosen among the collected counts (default: the collected space's)",
    )
    add_seed_argument(
        p, what="the solver's random starts and the measurements of --verify/--refine"
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="measure each solved policy with the collect protocol and add it to samples.h5",
    )
    p.add_argument(
        "--refine",
        type=int,
        metavar="N",
        help="per budget, up to N rounds of: measure the solved policy (collect protocol, added to "
        "samples.h5), refit the predictor, solve again; returns the best measured policy",
    )
    add_device_argument(p, "where --verify and --refine measure")
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    import json

    from seernet.api.workflow import check_solve_options, parse_bits, parse_budgets, solve_policies
    from seernet.device import resolve_device
    from seernet.errors import UserError
    from seernet.steps.context import RunContext
    from seernet.tables import format_table
    from seernet.workspace.folder import Workspace

    budgets = parse_budgets(
        **{k: getattr(args, k) for k in ("flops", "bitops", "params", "size", "latency")}
    )
    bits = parse_bits(args.bits)
    check_solve_options(budgets, args.pareto, args.refine, args.channel_multiple)
    if args.refine is not None and args.verify:
        raise UserError("--refine already measures every returned policy: drop --verify")
    ws = Workspace(args.workdir)
    ctx = RunContext(ws, ws.read(), resolve_device(args.device) if args.refine else _cpu())
    docs = solve_policies(
        ctx, budgets, bits, args.pareto, args.refine, args.seed, args.channel_multiple
    )
    if args.verify:
        docs = _verify(ws, args, docs)
    if args.json:
        print(json.dumps([d.to_json(with_path=True) for d in docs], indent=2))
        return 0
    for doc in docs:
        print(render(ctx, doc))
    if args.refine:
        print(format_table(*refine_rows(docs)))
    return 0


def _cpu():  # the fast solve never needs an accelerator
    import torch

    return torch.device("cpu")


def refine_rows(docs: list[PolicyDocument]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the refine summary: the prediction made before each measurement."""
    from seernet.steps.solve import format_cost

    head = [
        "policy",
        "FLOPs",
        "BitOPs",
        "predicted val %",
        "measured val %",
        "within 2 std",
        "measured",
    ]
    rows = []
    for d in docs:
        m, s, a = d.predicted.mean, d.predicted.std, d.measured.val_accuracy
        rows.append(
            [
                d.name,
                format_cost("flops", d.costs["flops"]),
                format_cost("bitops", d.costs["bitops"]),
                f"{m:.2f} +/- {s:.2f}",
                f"{a:.2f}",
                "yes" if abs(a - m) <= 2 * s else "no",
                f"{d.measured.evaluations} new, best of {len(d.measured.candidates)}",
            ]
        )
    if any(d.measured.latency_ms is not None for d in docs):
        head += [
            "latency budget",
            "predicted ms",
            "measured ms",
            "budget held",
            "as share",
            "retries",
        ]
        for row, d in zip(rows, docs, strict=True):
            row += _latency_cells(d)
    return head, rows


def _latency_cells(d: PolicyDocument) -> list[str]:
    """The latency budget, predicted and measured ms, and whether the budget held."""
    m = d.measured
    budget = d.budgets.get("latency")
    predicted = d.costs.get("latency")
    held, share = (
        "-" if v is None else ("yes" if v else "NO")
        for v in (m.latency_held, m.latency_held_as_share)
    )
    return ["-" if budget is None else f"{budget:.3f}",
            "-" if predicted is None else f"{predicted:.3f}",
            "-" if m.latency_ms is None else f"{m.latency_ms:.3f}", held, share,
            str(m.latency_retries or 0)]  # fmt: skip


def _verify(ws, args: argparse.Namespace, docs: list[PolicyDocument]) -> list[PolicyDocument]:
    """Measure every solved policy and print predicted +/- std next to measured; the
    documents with what was measured."""
    from dataclasses import replace

    from seernet.device import resolve_device
    from seernet.steps.context import RunContext
    from seernet.steps.solve import verify
    from seernet.tables import format_table

    ctx = RunContext(ws, ws.read(), resolve_device(args.device))
    rows = verify(ctx, docs, args.seed)
    docs = [replace(d, verified_accuracy=r[3]) for d, r in zip(docs, rows, strict=True)]
    docs, latency = _verify_latency(ctx, docs)
    if not args.json:
        table = [[n, f"{m:.2f} +/- {s:.2f}", f"{a:.2f}", f"{a - m:+.2f}"] for n, m, s, a in rows]
        head = ["policy", "predicted val %", "measured val %", "error"]
        if latency:
            head += ["predicted ms", "measured ms"]
            table = [
                [*r, f"{d.costs['latency']:.3f}", f"{d.verified_latency_ms:.3f}"]
                for r, d in zip(table, docs, strict=True)
            ]
        print(format_table(head, table))
    return docs


def _verify_latency(ctx, docs: list[PolicyDocument]) -> tuple[list[PolicyDocument], bool]:
    """Measure each policy's pruned float model as the table was measured (when there is a
    table); the documents with their measured latency, and whether there was a table."""
    from dataclasses import replace

    from seernet.latency.table import measured_latency_ms
    from seernet.steps.solve import attach_latency

    table = attach_latency(ctx, required=False)
    if table is None:
        return docs, False
    return [
        replace(d, verified_latency_ms=measured_latency_ms(ctx.model, ctx.space, d.policy, table))
        for d in docs
    ], True


def render(ctx, doc: PolicyDocument) -> str:
    """Human-readable report of one solved policy."""
    from seernet.steps.solve import format_cost
    from seernet.tables import format_table

    policy = doc.policy
    groups = [[g.name, f"{policy.channels[g.name]}/{g.channels}"] for g in ctx.space.groups]
    layers = [
        [r["layer"], f"{r['in']}->{r['out']}", f"{r['w_bits']}/{r['a_bits']}"]
        for r in ctx.costs.per_layer(policy)
    ]
    costs = [
        [k, format_cost(k, doc.costs[k]), format_cost(k, b), f"{100 * doc.costs[k] / b:.1f}%"]
        for k, b in doc.budgets.items()
    ]
    if "latency" in doc.costs and "latency" not in doc.budgets:
        costs.append(["latency", format_cost("latency", doc.costs["latency"]), "-", "-"])
    if "latency" in doc.costs:
        lt = doc.latency_table
        notes = [
            f"note: latency is predicted from latency.json ({lt['device']}, {lt['threads']} thread(s), "
            f"batch {lt['batch_size']}) for the pruned float model"
        ]
    else:
        notes = []
    notes += [f"note: {k} budget = {why}" for k, why in doc.derived_budgets.items()]
    notes += [f"note: {doc.note}"] if doc.note else []
    pred = doc.predicted
    if doc.measured:
        verdict = (
            f"measured val accuracy {doc.measured.val_accuracy:.2f}% (predicted "
            f"{pred.mean:.2f} +/- {pred.std:.2f}% before measuring)"
        )
    else:
        verdict = (
            f"predicted accuracy {pred.mean:.2f} +/- {pred.std:.2f}% (a prediction, not a "
            f"measurement: --refine N measures it)"
        )
    return "\n".join(
        [
            f"== {doc.name} ({doc.bits_mode}) ==",
            format_table(["channel group", "kept/total"], groups),
            "",
            format_table(["layer", "channels", "w/a bits"], layers),
            "",
            format_table(["cost", "policy", "budget", "used"], costs),
            *notes,
            f"{verdict}   solved in {doc.solve_seconds:.2f} s",
            f"wrote {doc.path}",
            "",
        ]
    )
