"""Re-time a latency-budget bench's answers, all in one set: is a miss the model or the timing?

``bench_latency_budget.py`` judges each answer by ``compress``'s check: the export and the
unpruned model, two sessions timed in turn. This times every cell's export, the latency
table's form of its policy (``seernet.latency.ort.policy_qdq``, what ``solve --refine``
times) and the unpruned model's QDQ form together, one run of each per round
(``interleaved_times``), and prints each answer's share of the unpruned model next to the
budget's share and to the shares refine and compress measured.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/retime_latency_budget.py \\
        benchmarks/out/latency-budget-r8 --runs 300
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from seernet.compression.ort_runtime import (
    interleaved_times,
    load_average,
    random_input,
    session,
    summary,
)
from seernet.latency.ort import policy_qdq
from seernet.space.policy_document import PolicyDocument
from seernet.steps.context import RunContext
from seernet.tables import format_table
from seernet.workspace.folder import Workspace

UNPRUNED = "unpruned"


def answered(results: dict) -> dict:
    """The cells that returned a policy (not refused as infeasible)."""
    return {k: r for k, r in sorted(results.items()) if "refused" not in r}


def sessions(bench: Path, cells: dict) -> tuple[dict, tuple[int, ...]]:
    """ORT sessions (the unpruned model, and per cell its export and its table form) and
    the model's input shape."""
    ws = Workspace(bench / "ws")
    ctx = RunContext(ws, ws.read(), torch.device("cpu"))
    residuals = json.loads((bench / "ws" / "latency.json").read_text()).get("qdq_residuals")
    form = residuals or "float"
    out = {UNPRUNED: session(policy_qdq(ctx.model, ctx.space, ctx.space.full_policy(), form), 1)}
    for key, r in cells.items():
        doc = PolicyDocument.load(bench / "ws" / "policies" / f"{r['name']}.json")
        out[f"{key}:export"] = session(
            bench / "ws" / "compressed" / r["name"] / "model.qdq.onnx", 1
        )
        out[f"{key}:table form"] = session(policy_qdq(ctx.model, ctx.space, doc.policy, form), 1)
    return out, ctx.space.input_shape


def report(cells: dict, medians: dict[str, float]) -> str:
    """Per cell: shares of the unpruned model's median (export, table form), the budget's
    share, and what refine and compress measured; then how many exports held."""
    full = medians[UNPRUNED]
    rows, held = [], 0
    for key, r in cells.items():
        export, form = medians[f"{key}:export"] / full, medians[f"{key}:table form"] / full
        held += export <= r["share_allowed"]
        s = r.get("solve", {})
        share = s.get("latency_share") or (
            s["latency_ms"] / s["unpruned_latency_ms"] if s else None
        )
        refine = "-" if share is None else f"{share:.3f}"
        rows.append([key, f"{medians[f'{key}:export']:.3f}", f"{export:.3f}", f"{form:.3f}",
                     f"{r['share_allowed']:.3f}", refine, f"{r['share_measured']:.3f}"])  # fmt: skip
    head = ["cell", "export ms", "export share", "table form share", "allowed share",
            "refine's share", "compress's share"]  # fmt: skip
    return (f"unpruned {full:.3f} ms\n" + format_table(head, rows)
            + f"\nexports within the budget's share: {held}/{len(cells)}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bench", type=Path, help="a bench_latency_budget.py --out folder")
    p.add_argument("--runs", type=int, default=300, help="timed rounds")
    args = p.parse_args(argv)
    cells = answered(json.loads((args.bench / "results.json").read_text()))
    sess, shape = sessions(args.bench, cells)
    before = load_average()
    times = interleaved_times(sess, random_input(shape, 1), args.runs, 3)
    print(f"1-minute load {before} before, {load_average()} after; {args.runs} rounds")
    print(report(cells, {k: summary(v)["median_ms"] for k, v in times.items()}))


if __name__ == "__main__":
    main()
