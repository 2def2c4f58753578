"""Can a printed prediction be believed? Coverage of ``solve --refine`` predictions.

Every policy that ``solve --refine`` measures was predicted *before* it was measured
(mean +/- std of the predictor fitted on everything measured so far). This bench runs
``seernet solve --refine N`` for several budgets and seeds on copies of one workspace
and scores those predictions against their measurements:

- coverage: the share of measured policies within predicted +/- 1 and 2 std
  (target: >= 90% within 2 std, over >= 20 policies);
- the largest prediction against the base policy's measured accuracy (the store's
  unpruned highest-bit anchor), since no prediction should promise more.

Each seed works in its own copy of the workspace (``OUT/seed-S/``), refining the
budgets in order as a user would; every finished (seed, budget) is stored as JSON and
skipped on a rerun.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_trust.py --workdir WS [--seeds 0,1] [--refine 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from seernet.steps.fit import base_cap
from seernet.tables import format_table
from seernet.workspace.store import SampleStore

# (name, solve flags): 8-bit pruning only, and mixed precision at the BitOPs of uniform
# 4-bit (solve's default for --bits mixed: 16 x FLOPs) and uniform 3-bit (9 x FLOPs). The
# unpruned model's BitOPs are 64 x its FLOPs (every layer 8/8-bit), so 9 x (p% of the
# FLOPs) is 9p/64 % of the unpruned BitOPs.
BUDGETS = [
    *[(f"flops{p}_8bit", ["--flops", f"{p}%", "--bits", "8"]) for p in (30, 50, 70)],
    *[(f"flops{p}_mixed16", ["--flops", f"{p}%", "--bits", "mixed"]) for p in (30, 50, 70)],
    *[(f"flops{p}_mixed9", ["--flops", f"{p}%", "--bitops", f"{9 * p / 64:.4g}%", "--bits", "mixed"])
      for p in (30, 50, 70)],
]  # fmt: skip


def run_budget(ws: Path, flags: list[str], seed: int, refine: int) -> dict:
    """One ``solve --refine`` in a subprocess (as a user runs it); its JSON document."""
    cmd = [sys.executable, "-m", "seernet.cli.main", "solve", "--workdir", str(ws), *flags,
           "--refine", str(refine), "--seed", str(seed), "--json"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    (doc,) = json.loads(out.stdout)
    return doc


def base_accuracy(ws: Path) -> float | None:
    """The measured base policy the predictor's cap stands on (``seernet.steps.fit.base_cap``)."""
    with SampleStore.open(ws / "samples.h5") as store:
        cap = base_cap(store.encoded, store.accuracy, n_val=1)  # only its base is used
    return None if cap is None else cap.base


def measure(args: argparse.Namespace) -> list[dict]:
    """Run (or load) every (seed, budget); return the finished documents."""
    done = []
    for seed in args.seeds:
        ws = args.out / f"seed-{seed}"
        if not ws.exists() and not args.score_only:
            shutil.copytree(args.workdir, ws, ignore=shutil.ignore_patterns("compressed", "report"))
        for name, flags in [b for b in BUDGETS if not args.budgets or b[0] in args.budgets]:
            path = args.out / f"seed-{seed}-{name}.json"
            if not path.is_file() and args.score_only:
                continue
            if not path.is_file():
                doc = run_budget(ws, flags, seed, args.refine)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"seed": seed, "budget": name, "doc": doc}, indent=1))
                os.replace(tmp, path)
                print(
                    f"seed {seed} {name}: measured {doc['measured']['val_accuracy']:.2f}",
                    flush=True,
                )
            done.append(json.loads(path.read_text()))
    return done


def score(runs: list[dict], base: float | None) -> str:
    """Per-candidate table, coverage, and the largest prediction against the base policy."""
    rows, z = [], []
    for run in runs:
        for c in run["doc"]["measured"]["candidates"]:
            if not c["new"]:  # measured before this solve: not a fresh test of a prediction
                continue
            err = (c["measured"] - c["predicted_mean"]) / max(c["predicted_std"], 1e-9)
            z.append(err)
            rows.append([run["seed"], run["budget"], f"{c['predicted_mean']:.2f} +/- {c['predicted_std']:.2f}",
                         f"{c['measured']:.2f}", f"{c['measured'] - c['predicted_mean']:+.2f}",
                         "yes" if abs(err) <= 2 else "no"])  # fmt: skip
    z = np.abs(np.asarray(z))
    preds = [c["predicted_mean"] for r in runs for c in r["doc"]["measured"]["candidates"]]
    lines = [
        format_table(
            ["seed", "budget", "predicted val %", "measured val %", "error", "within 2 std"], rows
        ),
        "",
    ]
    if len(z):
        lines.append(f"{len(z)} policies predicted before being measured: within 1 std {np.mean(z <= 1):.0%}, "
                     f"within 2 std {np.mean(z <= 2):.0%} (target >= 90%)")  # fmt: skip
        returned = [r["doc"]["measured"]["val_accuracy"] for r in runs]
        lines.append(
            f"returned (best measured) policies: {len(returned)}, val accuracy {min(returned):.2f}-{max(returned):.2f}%"
        )
    if base is not None and preds:
        lines.append(f"largest prediction {max(preds):.2f}% vs the base policy's measured {base:.2f}% "
                     f"({'never above' if max(preds) <= base else 'ABOVE'})")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--workdir", type=Path, required=True, help="workspace with samples.h5 and predictor.pt"
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/trust"))
    p.add_argument(
        "--seeds",
        default="0,1",
        help="solver seeds, one workspace copy each (default: %(default)s)",
    )
    p.add_argument(
        "--refine", type=int, default=3, help="evaluations per budget (default: %(default)s)"
    )
    p.add_argument(
        "--budgets",
        help=f"comma-separated subset of {', '.join(b[0] for b in BUDGETS)} (default: all)",
    )
    p.add_argument(
        "--score-only", action="store_true", help="score the runs finished so far, measure nothing"
    )
    args = p.parse_args()
    args.budgets = args.budgets.split(",") if args.budgets else None
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if not (args.workdir / "predictor.pt").is_file():
        raise SystemExit(
            f"{args.workdir} has no predictor.pt: run 'seernet fit-predictor --workdir {args.workdir}'"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    runs = measure(args)
    print(score(runs, base_accuracy(args.workdir)))


if __name__ == "__main__":
    main()
