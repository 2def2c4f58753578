"""Fast solve vs anchors: what ``seernet solve`` (no ``--refine``) returns, measured.

For one workspace (a store and its predictor) and each cell of 30/50/70% FLOPs x
{8-bit; mixed precision at 16x, 9x and 4x the FLOPs budget in BitOPs}, this bench

1. runs ``seernet fit-predictor`` once and ``seernet solve`` per cell in subprocesses,
   exactly as a user does, on a copy of the workspace (the original is not touched);
2. measures, on the store's own protocol (same seed), the fast answer, Torch-Pruning's
   global-ranking policy at the highest uniform bit-width whose BitOPs fit and (mixed
   cells) at the uniform bit-width whose BitOPs equal the budget at the FLOPs budget
   (4, 3, 2 bits for 16x, 9x, 4x), activations widened where the budget allows (as
   ``solve --refine`` does), and HAWQ-V3's allocation on the global ranking's channels
   (mixed cells, where its ILP has a solution);
3. reports the fast answer's predicted mean +/- std next to its measurement, its gap to
   the best anchor, and over the fast answers (solver answers the store never held) the
   predictor's Kendall tau and RMSE.

Every measured (cell, arm) is stored in ``OUT/results.json`` and skipped on a rerun.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_fast_solve.py --workdir WS --out OUT
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from seernet.compression.protocol import Protocol, evaluate_policy
from seernet.space.policy import Policy
from seernet.steps.context import RunContext
from seernet.tables import format_table
from seernet.workspace.artifacts import STORE_NAME
from seernet.workspace.folder import Workspace
from seernet.workspace.store import SampleStore

PERCENTS = (30, 50, 70)
MIXED = (16, 9, 4)  # BitOPs budget = factor x FLOPs budget (uniform 4-, 3-, 2-bit)
UNIFORM_BITS = {16: 4, 9: 3, 4: 2}
ANCHOR_ARMS = ("global-ranking", "global-ranking-uniform", "hawq")


def cells() -> list[tuple[str, list[str]]]:
    """(name, solve flags) per cell."""
    out = []
    for p in PERCENTS:
        out.append((f"flops{p}_8bit", ["--flops", f"{p}%", "--bits", "8"]))
        for f in MIXED:
            # The unpruned model's BitOPs are 64 x its FLOPs (8/8-bit everywhere).
            out.append((f"flops{p}_mixed{f}", ["--flops", f"{p}%", "--bitops", f"{f * p / 64:.6g}%", "--bits", "mixed"]))  # fmt: skip
    return out


def seernet(*args: str) -> str:
    """One seernet command in a subprocess; its stdout (exits on failure)."""
    cmd = [sys.executable, "-m", "seernet.cli.main", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr.strip()[-2000:]}")
    return out.stdout


class Results:
    """``OUT/results.json``: {cell: {arm: {...}}}, written after every measurement."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, cell: str, arm: str) -> dict | None:
        return self.data.get(cell, {}).get(arm)

    def put(self, cell: str, arm: str, row: dict) -> None:
        self.data.setdefault(cell, {})[arm] = row
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)


def policy_key(encoded) -> str:
    """An encoded policy as the benches' caches key it (``variants.json``, ``noise.json``)."""
    return json.dumps([round(float(v), 9) for v in encoded])


def measure_policy(ctx: RunContext, protocol: Protocol, policy: Policy) -> float:
    criterion = ctx.criterion(protocol.criterion)
    acc, _ = evaluate_policy(
        ctx.model, ctx.space, policy, ctx.splits, protocol, ctx.device, criterion
    )
    return acc


def global_ranking_anchor(ctx: RunContext, budgets: dict[str, float]) -> tuple[Policy, int] | None:
    """The global ranking at the highest uniform bit-width that meets every budget."""
    from seernet.compression.global_ranking import global_ranking_policy
    from seernet.steps.budget_anchors import widest_activations

    for bits in sorted(ctx.space.choices.bits, reverse=True):
        try:
            policy, _ = global_ranking_policy(ctx.model, ctx.space, ctx.costs, budgets, bits)
        except ValueError:
            continue
        return widest_activations(ctx, policy, budgets), bits
    return None


def run_cell(
    ctx, protocol, ws: Path, name: str, flags: list[str], res: Results, hawq_cache: dict
) -> None:
    from seernet.compression.global_ranking import global_ranking_policy
    from seernet.steps.budget_anchors import hawq_anchor, widest_activations

    fast = res.get(name, "fast")
    if fast is None:
        start = time.perf_counter()
        (doc,) = json.loads(seernet("solve", "--workdir", str(ws), *flags, "--json"))
        wall = time.perf_counter() - start
        policy = Policy.from_json(doc["policy"])
        acc = measure_policy(ctx, protocol, policy)
        fast = {"predicted": doc["predicted"], "measured": acc, "solve_seconds": doc["solve_seconds"],
                "wall_seconds": wall, "budgets": doc["budgets"], "costs": doc["costs"], "encoded": doc["encoded"]}  # fmt: skip
        res.put(name, "fast", fast)
    budgets = fast["budgets"]
    if "8bit" in name:
        budgets = {k: v for k, v in budgets.items() if k != "bitops"}
    if res.get(name, "global-ranking") is None:
        found = global_ranking_anchor(ctx, budgets)
        row = {"measured": None}
        if found is not None:
            policy, bits = found
            row = {"measured": measure_policy(ctx, protocol, policy), "bits": bits,
                   "encoded": ctx.space.encode(policy).tolist()}  # fmt: skip
        res.put(name, "global-ranking", row)
    if "mixed" in name and res.get(name, "global-ranking-uniform") is None:
        # the uniform bit-width whose BitOPs equal the budget at the FLOPs budget: 16x -> 4 bits
        bits = UNIFORM_BITS[int(name.rsplit("mixed", 1)[1])]
        row = {"measured": None, "bits": bits}
        try:
            policy, _ = global_ranking_policy(ctx.model, ctx.space, ctx.costs, budgets, bits)
            policy = widest_activations(ctx, policy, budgets)
            row.update(
                measured=measure_policy(ctx, protocol, policy),
                encoded=ctx.space.encode(policy).tolist(),
            )
        except ValueError:
            pass
        res.put(name, "global-ranking-uniform", row)
    if "mixed" in name and res.get(name, "hawq") is None:
        x = hawq_anchor(ctx, budgets, hawq_cache)
        row = {"measured": None}
        if x is not None:
            row = {
                "measured": measure_policy(ctx, protocol, ctx.space.decode(x)),
                "encoded": x.tolist(),
            }
        res.put(name, "hawq", row)


def report(res: Results) -> str:
    rows, pred, std, meas, gaps = [], [], [], [], []
    for name, _ in cells():
        arms = res.data.get(name)
        if not arms or "fast" not in arms:
            continue
        fast = arms["fast"]
        anchors = {
            a: r["measured"]
            for a, r in arms.items()
            if a != "fast" and r.get("measured") is not None
        }
        best = max(anchors.values()) if anchors else None
        gap = None if best is None else fast["measured"] - best
        p = fast["predicted"]
        pred.append(p["mean"])
        std.append(p["std"])
        meas.append(fast["measured"])
        gaps.append(gap)
        rows.append([name, f"{p['mean']:.2f} +/- {p['std']:.2f}", f"{fast['measured']:.2f}",
                     f"{(fast['measured'] - p['mean']) / max(p['std'], 1e-9):+.1f}",
                     *(f"{anchors[a]:.2f}" if a in anchors else "-" for a in ANCHOR_ARMS),
                     "-" if gap is None else f"{gap:+.2f}", f"{fast['solve_seconds']:.2f}"])  # fmt: skip
    head = ["cell", "fast: predicted", "fast: measured", "z", "GR, top bits that fit",
            "GR, uniform b", "HAWQ", "fast - best anchor", "solve s"]  # fmt: skip
    text = format_table(head, rows)
    if len(pred) >= 3:
        pred, std, meas = np.asarray(pred), np.asarray(std), np.asarray(meas)
        tau = kendalltau(pred, meas).statistic
        rmse = float(np.sqrt(np.mean((pred - meas) ** 2)))
        covered = int(np.sum(np.abs(meas - pred) <= 2 * std))
        g = np.asarray([x for x in gaps if x is not None])
        text += (f"\nover {len(pred)} solver answers: Kendall tau {tau:.3f}, RMSE {rmse:.2f}, "
                 f"{covered}/{len(pred)} within 2 std; fast >= best anchor - 0.3 in "
                 f"{int(np.sum(g >= -0.3))}/{len(g)} cells, > +0.3 in {int(np.sum(g > 0.3))}, "
                 f"worst {g.min():+.2f}")  # fmt: skip
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--workdir", type=Path, required=True, help="a collected workspace (not modified)"
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cells", default="", help="comma-separated cell names (default: all)")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    res = Results(args.out / "results.json")
    if not args.report_only:
        ws = args.out / "ws"
        if not ws.exists():
            shutil.copytree(
                args.workdir, ws, ignore=shutil.ignore_patterns("compressed", "report", "policies")
            )
            seernet("fit-predictor", "--workdir", str(ws))
        ctx = RunContext(Workspace(ws), Workspace(ws).read(), torch.device("cpu"))
        with SampleStore.open(ws / STORE_NAME) as store:
            protocol = Protocol(**store.spec.protocol)
        hawq_cache: dict = {}
        wanted = set(filter(None, args.cells.split(",")))
        for name, flags in cells():
            if not wanted or name in wanted:
                run_cell(ctx, protocol, ws, name, flags, res, hawq_cache)
                print(report(res).splitlines()[-1] if res.data else "", flush=True)
    text = report(res)
    (args.out / "report.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
