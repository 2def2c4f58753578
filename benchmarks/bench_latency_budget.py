"""Latency budgets held by measurement: ``solve --latency`` answers, compressed and timed.

For one workspace with a fitted predictor (copied to ``OUT/ws``, the original untouched):
``seernet profile-latency`` with ``--runtime`` (once), then per latency fraction of the
unpruned model and bit mode, ``seernet solve --latency F% --bits B`` and ``seernet compress``
of its answer (``--steps 0``: fine-tuning changes weights, not speed), which times the
deployed model where the table was made and says whether the budget held
(``metrics.json``'s ``latency_budget``). Reports the hit rate and the latency model's error
(predicted ms against measured ms). With ``--refine N`` the solve is ``solve --refine N``,
which times its answer next to the unpruned model and solves again under a tighter latency
budget when the answer's share missed (``seernet.steps.refine``); compress's check is a
second, independent timing. Every finished cell is stored in ``OUT/results.json``
and skipped on a rerun; the machine's load is recorded with every timing.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_latency_budget.py \\
        --workdir benchmarks/out/fast-solve-gr60/ws --out benchmarks/out/latency-budget
        [--refine 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from seernet.tables import format_table

FRACTIONS = (60, 70, 80, 90, 95)  # in ORT at batch 1 the smallest model takes ~54% of the full time
BITS = ("8", "mixed")


def seernet(*args: str) -> str:
    """One seernet command in a subprocess; its stdout (exits on failure)."""
    cmd = [sys.executable, "-m", "seernet.cli.main", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr.strip()[-2000:]}")
    return out.stdout


def run_cell(ws: Path, fraction: int, bits: str, runs: int, refine: int) -> dict:
    extra = ["--refine", str(refine)] if refine else []
    try:
        (doc,) = json.loads(seernet("solve", "--workdir", str(ws), "--latency", f"{fraction}%",
                                    "--bits", bits, *extra, "--json"))  # fmt: skip
    except SystemExit as exc:
        if "below the smallest model" not in str(exc):
            raise
        return {
            "refused": str(exc).rsplit("error: ", 1)[-1]
        }  # the table says no model is that fast
    policy = ws / "policies" / f"{doc['name']}.json"
    metrics = json.loads(seernet("compress", str(policy), "--workdir", str(ws), "--device", "cpu",
                                 "--steps", "0", "--latency-runs", str(runs), "--json"))  # fmt: skip
    held = metrics["latency_budget"]
    m = doc.get("measured") or {}
    solve_keys = ("latency_ms", "unpruned_latency_ms", "latency_share", "latency_held_as_share",
                  "latency_retries", "latency_budget_solved", "val_accuracy", "evaluations")  # fmt: skip
    return {"name": doc["name"], "predicted_ms": doc["costs"]["latency"], **held,
            "flops": doc["costs"]["flops"], "unpruned_flops": doc["unpruned"]["flops"],
            "solve": {k: m[k] for k in solve_keys if k in m}}  # fmt: skip


def report(res: dict) -> str:
    rows, errors, share_errors = [], [], []
    refused = sorted(k for k, r in res.items() if "refused" in r)
    res = {k: r for k, r in res.items() if "refused" not in r}
    for key, r in sorted(res.items()):
        err = 100 * (r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"]
        errors.append(abs(err))
        if (
            "share_allowed" in r
        ):  # the table's share of its own unpruned latency, against the measured one
            predicted_share = r["predicted_ms"] * r["share_allowed"] / r["budget_ms"]
            share_errors.append(abs(predicted_share - r["share_measured"]) / r["share_measured"])
        share = (f"{100 * r['share_measured']:.1f}% / {100 * r['share_allowed']:.1f}%"
                 if "share_allowed" in r else "-")  # fmt: skip
        as_share = ("yes" if r["held_as_share"] else "NO") if "held_as_share" in r else "-"
        solve = r.get("solve", {})
        retries = str(solve.get("latency_retries", 0)) if "latency_ms" in solve else "-"
        rows.append([key, f"{r['budget_ms']:.3f}", retries, f"{r['predicted_ms']:.3f}", f"{r['measured_ms']:.3f}",
                     f"{err:+.1f}%", "yes" if r["held"] else "NO", share, as_share,
                     f"{r['unpruned_flops'] / r['flops']:.2f}x", str(r["load_average_1min"])])  # fmt: skip
    held = sum(r["held"] for r in res.values())
    shares = [r["held_as_share"] for r in res.values() if "held_as_share" in r]
    table = format_table(["cell", "budget ms", "refine retries", "predicted ms", "measured ms", "error", "held",
                          "share of unpruned: measured / allowed", "held as share", "FLOPs reduction",
                          "load"], rows)  # fmt: skip
    summary = (f"budget held in {held}/{len(res)}" + (f" (as a share of the unpruned model timed with it: "
               f"{sum(shares)}/{len(shares)})" if shares else "") + "; latency model |error| median "
               f"{statistics.median(errors):.1f}%, max {max(errors):.1f}%") if res else "no cells"  # fmt: skip
    if share_errors:
        summary += (f", of the share of the unpruned model: median {100 * statistics.median(share_errors):.1f}%, "
                    f"max {100 * max(share_errors):.1f}%")  # fmt: skip
    if refused:
        summary += f"; refused by solve as infeasible (no model of the space predicted that fast): {', '.join(refused)}"
    return table + "\n" + summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, required=True, help="a workspace with predictor.pt")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--runtime", default="onnxruntime", choices=("onnxruntime", "torch"))
    p.add_argument("--runs", type=int, default=20, help="timed runs per measured latency")
    p.add_argument("--refine", type=int, default=0, help="solve --refine N (0: the fast solve)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    res = json.loads(path.read_text()) if path.is_file() else {}
    ws = args.out / "ws"
    if not ws.exists():
        shutil.copytree(
            args.workdir, ws, ignore=shutil.ignore_patterns("compressed", "report", "policies")
        )
    if not (ws / "latency.json").is_file():
        seernet("profile-latency", "--workdir", str(ws), "--runtime", args.runtime)
    for bits in BITS:
        for fraction in FRACTIONS:
            key = f"latency{fraction}_{bits}bit" if bits != "mixed" else f"latency{fraction}_mixed"
            if key not in res:
                res[key] = run_cell(ws, fraction, bits, args.runs, args.refine)
                path.write_text(json.dumps(res, indent=1))
                print(report(res).splitlines()[-1], flush=True)
    text = report(res)
    (args.out / "report.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
