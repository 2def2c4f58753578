"""Active vs random sampling: how good is the predictor after n measured policies?

Three sample stores of the default model (ResNet-20, Fashion-MNIST), each measured
with the default collect protocol by ``seernet collect`` (resumable, so an interrupted
bench re-measures nothing):

- ``test``:   an independent set of stratified random policies (seed 100), never trained on;
- ``random``: ``--max`` stratified random policies (``collect --strategy random``, seed 1);
- ``active``: ``--max`` policies by active sampling (seed 1). The warm-up is fixed at
  ``--warmup`` policies (20% of the smallest point), so every prefix of the run is what an
  active run of that size would have measured.

Scoring fits the same MLP ensemble as ``collect`` on the first n samples of each arm
(mean over ``--fit-seeds`` seeds) and reports Kendall tau and RMSE on the test set.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_active.py measure test
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_active.py measure random
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_active.py measure active
    .venv/bin/python benchmarks/bench_active.py score
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ARMS = {"test": ("random", 100), "random": ("random", 1), "active": ("active", 1)}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("measure", "score"))
    p.add_argument("arm", nargs="?", choices=tuple(ARMS), help="which store to measure")
    p.add_argument("--out", default="benchmarks/out/active")
    p.add_argument("--test", type=int, default=150, help="test-set size")
    p.add_argument("--max", type=int, default=300, help="samples per arm")
    p.add_argument("--warmup", type=int, default=10, help="random warm-up of the active arm")
    p.add_argument("--points", default="50,100,200,300")
    p.add_argument("--step", type=int, default=25, help="grid for the sample-efficiency figure")
    p.add_argument("--fit-seeds", type=int, default=3)
    return p.parse_args()


def measure(args: argparse.Namespace) -> None:
    strategy, seed = ARMS[args.arm]
    n = args.test if args.arm == "test" else args.max
    cmd = [sys.executable, "-m", "seernet.cli.main", "collect", "--workdir", str(Path(args.out) / args.arm),
           "--samples", str(n), "--strategy", strategy, "--seed", str(seed)]  # fmt: skip
    if args.arm == "active":
        cmd += ["--warmup-fraction", repr(args.warmup / args.max)]
    subprocess.run(cmd, check=True)


def load(out: Path, arm: str) -> tuple[np.ndarray, np.ndarray]:
    from seernet.workspace.store import SampleStore

    store = SampleStore.open(out / arm / "samples.h5")
    return store.encoded, store.accuracy


def score(
    X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray, seeds: int
) -> tuple[float, float]:
    """Mean (Kendall tau, RMSE) on the test set over ``seeds`` ensemble fits."""
    from predictor.ensemble import MLPEnsemble
    from predictor.metrics import kendall_tau, rmse

    taus, errs = [], []
    for seed in range(seeds):
        pred = MLPEnsemble(n_members=5, random_state=seed).fit(X, y).predict(Xt)
        taus.append(kendall_tau(yt, pred))
        errs.append(rmse(yt, pred))
    return float(np.mean(taus)), float(np.mean(errs))


def first_reaching(curve: dict[int, float], target: float) -> int | None:
    return next((n for n in sorted(curve) if curve[n] >= target), None)


def main() -> None:
    args = parse_args()
    if args.action == "measure":
        if args.arm is None:
            raise SystemExit("measure needs an arm: test, random or active")
        measure(args)
        return
    from seernet.tables import format_table

    out = Path(args.out)
    Xt, yt = load(out, "test")
    arms = {arm: load(out, arm) for arm in ("random", "active")}
    # The test set must be independent: drop any test policy an arm happened to measure.
    seen = {tuple(x) for arm in arms.values() for x in np.round(arm[0], 6)}
    keep = np.array([tuple(x) not in seen for x in np.round(Xt, 6)])
    Xt, yt = Xt[keep], yt[keep]
    points = [int(p) for p in args.points.split(",")]
    rows, curves = [], {}
    for name, (X, y) in arms.items():
        grid = sorted(
            set(range(args.step * 2, len(y) + 1, args.step)) | {p for p in points if p <= len(y)}
        )
        curves[name] = {n: score(X[:n], y[:n], Xt, yt, args.fit_seeds) for n in grid}
        for n in points:
            if n in curves[name]:
                tau, err = curves[name][n]
                rows.append([name, n, f"{tau:.3f}", f"{err:.2f}"])
    print(f"test set: {len(yt)} measured policies ({(~keep).sum()} dropped as seen in training), "
          f"accuracy {yt.min():.1f}-{yt.max():.1f}%")  # fmt: skip
    print(format_table(["strategy", "samples", "Kendall tau", "RMSE (pt)"], rows))
    target_n = max(n for n in curves["random"] if n <= args.max)
    target = curves["random"][target_n][0]
    reach = first_reaching({n: v[0] for n, v in curves["active"].items()}, target)
    print(
        f"random's tau at {target_n} samples: {target:.3f}; active first reaches it at "
        + (
            f"{reach} samples"
            if reach
            else f"no n <= {max(curves['active'])} (grid step {args.step})"
        )
    )
    grid = sorted(set(curves["random"]) | set(curves["active"]))
    print("Kendall tau on the whole grid:")
    print(format_table(["samples", *grid], [[name, *(f"{curves[name][n][0]:.3f}" if n in curves[name] else "-" for n in grid)]
                                            for name in curves]))  # fmt: skip
    (out / "scores.json").write_text(
        json.dumps(
            {name: {str(n): v for n, v in c.items()} for name, c in curves.items()}, indent=1
        )
    )
    plot(curves, out / "active_vs_random.png")
    print(f"plot: {out / 'active_vs_random.png'}")


def plot(curves: dict[str, dict[int, tuple[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, curve in curves.items():
        n = sorted(curve)
        axes[0].plot(n, [curve[k][0] for k in n], marker="o", label=name)
        axes[1].plot(n, [curve[k][1] for k in n], marker="o", label=name)
    axes[0].set(xlabel="measured samples", ylabel="Kendall tau on test set")
    axes[1].set(xlabel="measured samples", ylabel="RMSE on test set (pt)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
