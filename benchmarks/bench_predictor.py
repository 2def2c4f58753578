"""Predictor benchmark: 5-fold CV of the MLP ensemble vs ridge / GP / random forest on the
SeerNet reference samples, and the ensemble's fit time on 500 x 100 synthetic samples.

Run: .venv/bin/python benchmarks/bench_predictor.py [--data-dir DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from predictor.crossval import ENSEMBLE, cross_validate
from predictor.ensemble import MLPEnsemble

# (name, samples file, accuracy file, README baselines: ridge/GP/RF Kendall tau and RMSE)
REFERENCE_SETS = [
    (
        "ResNet-20 CIFAR-10",
        "res20_sample_result_400.npy",
        "res20_acc_result_400.npy",
        (0.73, 0.42, 0.75, 0.40, 0.58, 0.67),
    ),
    (
        "ResNet-18 ImageNet",
        "resnet18_sample.npy",
        "resnet18_acc.npy",
        (0.61, 1.20, 0.60, 1.21, 0.43, 1.65),
    ),
    (
        "MobileNetV2 ImageNet",
        "mobilenetv2_sample.npy",
        "mobilenetv2_acc.npy",
        (0.25, 3.43, 0.25, 3.41, 0.39, 2.95),
    ),
]


def default_data_dir() -> Path:
    """../shared/reference/seernet-official relative to the repository root."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "seernet-official"


def min_max_encode(X: np.ndarray) -> np.ndarray:
    """Map every column to [0, 1], larger = keeps more, as the policy codec does.

    The reference files hold pruning ratios (fraction of channels removed, values in
    (0, 1), accuracy falls as they grow) and bit-widths (values >= 2, accuracy rises);
    a column is told apart by its values, which also catches MobileNetV2's layout (106
    bit-width columns, then 48 ratios, not the 102 + 52 its README row says). Ratios
    are flipped to kept fractions, so that every column points the way the monotone
    predictor assumes. Constant columns become 0.
    """
    X = np.where(X.max(axis=0) <= 1.0, 1.0 - X, X)
    lo, hi = X.min(axis=0), X.max(axis=0)
    return (X - lo) / np.where(hi > lo, hi - lo, 1.0)


def bench_reference(data_dir: Path, seed: int) -> dict:
    """Print and return the CV table for each reference set."""
    print("RMSE, Kendall tau, Spearman rho: mean over the 5 held-out folds (as in the README);")
    print("within k std: fraction of pooled out-of-fold points with |y - mean| <= k * std.")
    out = {}
    for name, xs_file, ys_file, readme in REFERENCE_SETS:
        X = min_max_encode(np.load(data_dir / xs_file))
        y = np.load(data_dir / ys_file)
        start = time.perf_counter()
        result = cross_validate(X, y, k=5, seed=seed)
        elapsed = time.perf_counter() - start
        print(
            f"\n{name}: {X.shape[0]} samples x {X.shape[1]} dims, KFold(5, shuffle, seed={seed}), {elapsed:.0f} s"
        )
        print(result.table())
        print(
            "README tau / RMSE: ridge {:.2f} / {:.2f}, GP {:.2f} / {:.2f}, RF {:.2f} / {:.2f}".format(
                *readme
            )
        )
        best = max((s.kendall_tau, m) for m, s in result.scores.items() if m != ENSEMBLE)
        print(
            f"ensemble tau minus best baseline ({best[1]}): {result.scores[ENSEMBLE].kendall_tau - best[0]:+.3f}"
        )
        out[name] = {
            m: {
                "rmse": s.rmse,
                "kendall_tau": s.kendall_tau,
                "spearman_rho": s.spearman_rho,
                "calibration": s.calibration(y),
            }
            for m, s in result.scores.items()
        }
    return out


def bench_fit_time(
    n: int = 500, d: int = 100, seed: int = 0, n_members: int | None = None
) -> tuple[float, float, int]:
    """Wall and CPU seconds to fit the default ensemble (calibration included) on a smooth
    synthetic n x d problem, and the epochs run. CPU time is what the fit costs; wall time
    also counts waiting for a core on a shared machine."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    y = np.sin(X @ rng.normal(size=d) / 5) + 0.1 * rng.normal(size=n)
    start, cpu = time.perf_counter(), time.process_time()
    members = {} if n_members is None else {"n_members": n_members}
    model = MLPEnsemble(random_state=seed, **members).fit(X, y)
    return time.perf_counter() - start, time.process_time() - cpu, model.n_epochs_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--seed", type=int, default=0, help="KFold and model seed (default 0)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    if not (args.data_dir / REFERENCE_SETS[0][1]).is_file():
        parser.exit(2, f"error: no reference samples in {args.data_dir}; pass --data-dir.\n")
    results = {"cv": bench_reference(args.data_dir, args.seed)}
    print()
    for members, label in (
        (None, "defaults: 8 members"),
        (5, "5 members, as the active sampler fits"),
    ):
        seconds, cpu, epochs = bench_fit_time(n_members=members)
        print(
            f"MLPEnsemble fit ({label}, 1 torch thread, calibration included), "
            f"500 samples x 100 dims: {seconds:.1f} s wall, {cpu:.1f} s CPU, {epochs} epochs"
        )
        key = "default" if members is None else f"{members}_members"
        results[f"fit_seconds_500x100_{key}"] = seconds
        results[f"fit_cpu_seconds_500x100_{key}"] = cpu
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
