"""Collect throughput by backend: one process vs spawned worker processes vs Ray tasks.

Each configuration runs the real ``seernet collect`` command (a subprocess, so start-up
counts as it does for a user) in a fresh workspace on the default model, data and
protocol, measuring ``--samples`` random policies (``--strategy random``: the sampler's
own work is then negligible and the same for every backend). The same policies are
measured by every configuration; at equal torch thread counts the accuracies must be
equal (the table checks), across thread counts float sums may differ slightly.

    .venv/bin/python benchmarks/bench_backends.py --samples 12            # the measurement
    .venv/bin/python benchmarks/bench_backends.py --samples 2 --skip-ray  # a smoke test

Configurations on a 2-core machine: local (1 process, 2 torch threads), ``--workers 2``
(2 processes x 1 thread), ``--backend ray --workers 2`` (2 tasks x 1 thread).
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

from seernet.tables import format_table
from seernet.workspace.store import SampleStore, row_key

CONFIGS = {
    "local, 1 process x 2 threads": ["--threads-per-worker", "2"],
    "local, 2 processes x 1 thread": ["--workers", "2", "--threads-per-worker", "1"],
    "ray, 2 tasks x 1 thread": ["--backend", "ray", "--workers", "2", "--threads-per-worker", "1"],
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out", default="benchmarks/out/backends", help="workspaces and results.json go here"
    )
    p.add_argument(
        "--samples", type=int, default=12, help="policies per configuration (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--skip-ray", action="store_true", help="leave Ray out (e.g. when it is not installed)"
    )
    p.add_argument("collect_args", nargs="*", help="extra 'seernet collect' options, after --")
    return p.parse_args()


def run_config(ws: Path, flags: list[str], args: argparse.Namespace) -> dict:
    """Run one collect from scratch; wall time, samples/min and the measured accuracies."""
    shutil.rmtree(ws, ignore_errors=True)
    cmd = [sys.executable, "-m", "seernet.cli.main", "collect", "--workdir", str(ws), "--samples", str(args.samples),
           "--strategy", "random", "--seed", str(args.seed), *flags, *args.collect_args]  # fmt: skip
    start = time.perf_counter()
    # OMP_NUM_THREADS unset: each configuration sets its thread count with --threads-per-worker.
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with SampleStore.open(ws / "samples.h5") as store:
        acc = {row_key(s.encoded): s.accuracy for s in store}
        eval_seconds = float(store.seconds.mean())
        span = float(store.time.max() - store.time.min())
    return {
        "wall_s": wall,
        "per_min": 60 * len(acc) / wall,
        "eval_s": eval_seconds,
        "span_s": span,
        "acc": acc,
    }


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    configs = {k: v for k, v in CONFIGS.items() if not (args.skip_ray and "ray" in k)}
    results = {
        name: run_config(out / f"ws-{i}", flags, args)
        for i, (name, flags) in enumerate(configs.items())
    }
    rows = []
    refs: dict[str, dict] = {}  # accuracies agree exactly only at equal torch thread counts
    for name, r in results.items():
        threads = configs[name][configs[name].index("--threads-per-worker") + 1]
        ref = refs.setdefault(threads, r["acc"])
        if r["acc"] is ref:
            same = f"reference ({threads} thread)"
        elif r["acc"].keys() != ref.keys():
            same = "NO: other policies"
        else:
            diff = max(abs(r["acc"][k] - ref[k]) for k in ref)
            same = "yes" if diff == 0 else f"NO: max diff {diff:.2f} pp"
        rows.append([name, f"{r['per_min']:.1f}", f"{r['wall_s']:.1f}", f"{r['eval_s']:.2f}", same])
    print(f"collect throughput, {args.samples} random policies each, {os.cpu_count()} CPUs")
    print(
        format_table(
            [
                "configuration",
                "samples/min",
                "wall s",
                "s per evaluation",
                "accuracies vs same thread count",
            ],
            rows,
        )
    )
    doc = {name: {k: v for k, v in r.items() if k != "acc"} for name, r in results.items()}
    (out / "results.json").write_text(
        json.dumps({"samples": args.samples, "results": doc}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
