"""The seed papers on the default model: LeGR vs the seernet solver, LAP's latency model.

(a) LeGR vs seernet at 30/50/70% FLOPs, 8-bit, identical fine-tuning (``compress``
    defaults): test accuracy and the whole search cost in wall seconds -- for seernet
    every measured sample of its store + fitting the predictor + solving; for LeGR every
    fitness evaluation of its evolution (``seernet legr``).
(b) The latency model: predicted (``latency.json`` from ``seernet profile-latency``, batch 1,
    1 thread) vs measured latency of every distinct pruned model of this bench and of
    ``bench_end_to_end``.
(c) At equal measured latency: ``solve --latency L --bits 8`` vs the 50%-FLOPs 8-bit policy
    whose measured latency is L.
(d) Channel criteria l1 / legr / dynamic inside the groups of one policy (50% FLOPs, 8-bit).

Needs ``bench_end_to_end.py`` to have run (its seernet policies and compressed models are
reused, not remade). Resumable: finished compress runs are kept.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_seeds.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from seernet.latency.table import load_table, measured_latency_ms, predicted_latency_ms
from seernet.space.policy import Policy
from seernet.steps.compress import CompressSettings, compress
from seernet.steps.context import RunContext
from seernet.tables import format_table
from seernet.workspace.folder import Workspace
from seernet.workspace.store import SampleStore

FRACTIONS = (0.3, 0.5, 0.7)
REFERENCE = "50%-8bit-seernet"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--ws",
        default="benchmarks/out/seeds/ws",
        help="workspace (a copy of the e2e source workspace)",
    )
    p.add_argument("--e2e", default="benchmarks/out/e2e", help="bench_end_to_end's output folder")
    p.add_argument("--latency-runs", type=int, default=50)
    p.add_argument(
        "--parts", default="abcd", help="which parts to run (latency parts want a quiet machine)"
    )
    return p.parse_args()


def seernet_cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "seernet.cli.main", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


def compressed(ctx: RunContext, doc: dict, name: str, criterion: str = "l1") -> dict:
    """``compress`` ``doc`` under ``name`` with the default settings (kept if already done)."""
    metrics = ctx.ws.path("compressed", name, "metrics.json")
    if not metrics.exists():
        print(f"=== compress {name} (criterion {criterion})", flush=True)
        doc = doc | {"name": name}
        compress(
            ctx,
            doc,
            Policy.from_json(doc["policy"]),
            CompressSettings(criterion=criterion, latency_runs=5),
        )
    return json.loads(metrics.read_text())


def e2e_metrics(e2e: Path, name: str) -> dict:
    return json.loads((e2e / "ws" / "compressed" / name / "metrics.json").read_text())


def e2e_policy(e2e: Path, name: str) -> dict:
    return json.loads((e2e / "ws" / "policies" / f"{name}.json").read_text())


# --- (a) --------------------------------------------------------------------------------------
def seernet_search_seconds(ws: Path, e2e: Path) -> tuple[float, int]:
    """Seconds of every stored sample + one predictor fit + the three solves; sample count."""
    from predictor.ensemble import MLPEnsemble

    store = SampleStore.open(ws / "samples.h5")
    start = time.perf_counter()
    MLPEnsemble(random_state=0).fit(store.encoded, store.accuracy)
    fit = time.perf_counter() - start
    solves = sum(
        e2e_policy(e2e, f"{round(100 * f)}%-8bit-seernet")["solve_seconds"] for f in FRACTIONS
    )
    return float(store.seconds.sum()) + fit + solves, len(store)


def part_a(ctx: RunContext, e2e: Path) -> list[list[str]]:
    if not ctx.ws.path("legr.json").exists():
        print("=== seernet legr (learning at 50% FLOPs)", flush=True)
    docs = json.loads(seernet_cli("legr", "--workdir", str(ctx.ws.root), "--flops", "30%,50%,70%",
                                  "--target", "50%", "--seed", "0", "--json"))  # fmt: skip
    learned = docs["legr"]
    legr_cost = learned["seconds"]
    legr = {frac: compressed(ctx, doc, f"legr-{round(100 * frac)}%", criterion="l2")  # legr's transform keeps l2's order
            for frac, doc in zip(FRACTIONS, docs["policies"], strict=True)}  # fmt: skip
    seer_cost, n_samples = seernet_search_seconds(Path(ctx.ws.root), e2e)
    rows = []
    for frac in FRACTIONS:
        seer = e2e_metrics(e2e, f"{round(100 * frac)}%-8bit-seernet")
        for method, m in (("seernet", seer), ("legr", legr[frac])):
            rows.append([f"{round(100 * frac)}%", method, f"{100 * m['costs']['flops'] / m['unpruned']['flops']:.1f}%",
                         f"{m['accuracy']['before_finetune']['test']:.2f}", f"{m['accuracy']['after_finetune']['test']:.2f}"])  # fmt: skip
    print(
        format_table(["FLOPs budget", "method", "FLOPs", "test before QAT", "test after QAT"], rows)
    )
    print(format_table(["method", "evaluations", "search wall seconds"], [
        ["seernet (samples + fit + 3 solves)", n_samples, f"{seer_cost:.0f}"],
        ["legr (evolution at 50% FLOPs)", f"{learned['evaluations']} ({learned['measured_policies']} distinct)", f"{legr_cost:.0f}"],
    ]))  # fmt: skip
    return rows


# --- (b) --------------------------------------------------------------------------------------
def part_b(ctx: RunContext, e2e: Path, runs: int) -> dict[str, float]:
    if not ctx.ws.path("latency.json").exists():
        print("=== seernet profile-latency (batch 1, 1 thread)", flush=True)
        seernet_cli(
            "profile-latency", "--workdir", str(ctx.ws.root), "--threads", "1", "--batch-size", "1"
        )
    table = load_table(ctx.ws.path("latency.json"), ctx.space)
    policies: dict[tuple, tuple[str, Policy]] = {}
    folders = [
        *sorted((e2e / "ws" / "policies").glob("*.json")),
        *sorted(ctx.ws.path("policies").glob("*.json")),
    ]
    for path in folders:
        policy = Policy.from_json(json.loads(path.read_text())["policy"])
        policies.setdefault(
            tuple(sorted(policy.channels.items())), (path.stem, policy)
        )  # latency ignores bits
    rows, errors, measured = [], [], {}
    for name, policy in policies.values():
        pred = predicted_latency_ms(ctx.space, table, policy)
        meas = measured_latency_ms(ctx.model, ctx.space, policy, table, runs=runs)
        measured[name] = meas
        errors.append(100 * (pred - meas) / meas)
        rows.append([name, f"{pred:.3f}", f"{meas:.3f}", f"{errors[-1]:+.1f}%"])
    print(f"latency table: {table.device}, {table.threads} thread(s), batch {table.batch_size}")
    print(
        format_table(
            ["pruned model (distinct channel counts)", "predicted ms", "measured ms", "error"], rows
        )
    )
    abs_err = [abs(e) for e in errors]
    print(f"{len(rows)} models: median |error| {statistics.median(abs_err):.1f}%, max {max(abs_err):.1f}%, "
          f"mean signed {np.mean(errors):+.1f}% (target: median <= 15%)")  # fmt: skip
    return measured


# --- (c) and (d) --------------------------------------------------------------------------
def part_c(ctx: RunContext, e2e: Path, measured: dict[str, float], runs: int) -> None:
    table = load_table(ctx.ws.path("latency.json"), ctx.space)
    ref = e2e_policy(e2e, REFERENCE)
    ref_ms = measured.get(REFERENCE) or measured_latency_ms(
        ctx.model, ctx.space, Policy.from_json(ref["policy"]), table, runs
    )
    doc = json.loads(
        seernet_cli(
            "solve",
            "--workdir",
            str(ctx.ws.root),
            "--latency",
            f"{ref_ms:.4f}ms",
            "--bits",
            "8",
            "--json",
        )
    )[0]
    lat = compressed(ctx, doc, "latency-budget")
    flops = e2e_metrics(e2e, REFERENCE)
    lat_ms = measured_latency_ms(ctx.model, ctx.space, Policy.from_json(doc["policy"]), table, runs)
    rows = [[f"--flops 50% ({REFERENCE})", f"{100 * flops['costs']['flops'] / flops['unpruned']['flops']:.1f}%",
             f"{ref_ms:.3f}", f"{flops['accuracy']['after_finetune']['test']:.2f}"],
            [f"--latency {ref_ms:.3f}ms", f"{100 * lat['costs']['flops'] / lat['unpruned']['flops']:.1f}%",
             f"{lat_ms:.3f}", f"{lat['accuracy']['after_finetune']['test']:.2f}"]]  # fmt: skip
    print(format_table(["budget (8-bit)", "FLOPs", "measured ms (b=1)", "test after QAT"], rows))


def part_d(ctx: RunContext, e2e: Path) -> None:
    if not ctx.ws.path("dynamic_scores.pt").exists():
        print("=== seernet dynamic-scores", flush=True)
        seernet_cli("dynamic-scores", "--workdir", str(ctx.ws.root))
    ref = e2e_policy(e2e, REFERENCE)
    rows = [["l1", f"{e2e_metrics(e2e, REFERENCE)['accuracy']['before_finetune']['test']:.2f}",
             f"{e2e_metrics(e2e, REFERENCE)['accuracy']['after_finetune']['test']:.2f}"]]  # fmt: skip
    for criterion in ("l2", "dynamic"):  # l2: what the removed "legr" criterion pruned
        m = compressed(ctx, ref, f"criterion-{criterion}", criterion=criterion)
        rows.append(
            [
                criterion,
                f"{m['accuracy']['before_finetune']['test']:.2f}",
                f"{m['accuracy']['after_finetune']['test']:.2f}",
            ]
        )
    print(f"one policy ({REFERENCE}), channels chosen inside each group by:")
    print(format_table(["criterion", "test before QAT", "test after QAT"], rows))


def main() -> None:
    args = parse_args()
    ws = Workspace(args.ws)
    ctx = RunContext(ws, ws.read(), torch.device("cpu"))
    e2e = Path(args.e2e)
    torch.set_num_threads(1)
    if "a" in args.parts:
        print("(a) LeGR vs seernet, 8-bit")
        part_a(ctx, e2e)
    measured = {}
    if "b" in args.parts:
        print("\n(b) latency model, batch 1")
        measured = part_b(ctx, e2e, args.latency_runs)
    if "c" in args.parts:
        print("\n(c) equal measured latency")
        part_c(ctx, e2e, measured, args.latency_runs)
    if "d" in args.parts:
        print("\n(d) criteria")
        part_d(ctx, e2e)


if __name__ == "__main__":
    main()
