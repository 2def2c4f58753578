"""Predictor benchmark: 5-fold CV of the MLP ensemble vs ridge / GP / random forest on the
SeerNet reference samples, in two modes, and the ensemble's fit time on 500 x 100 synthetic
samples.

The reference files are used as released: pruning columns hold the fraction of channels
*removed* (accuracy falls as they grow), bit-width columns the bits (accuracy rises). Both
modes scale every column to [0, 1] without flipping any:

- "explicit directions": the ensemble is told the direction of every column
  (``monotone`` = -1 for pruning ratios, +1 for bit-widths), as seernet's policy space
  tells it its codec's directions;
- "unconstrained": no direction is given (the estimator's default).

The baselines see the same scaled columns in both modes (they take no directions), so
they are fitted once per set and seed. Every finished (set, mode, seed) result is stored
under ``--out`` and reused on a rerun (delete the file to recompute it).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_predictor.py [--data-dir DIR]
     [--seed 0] [--out benchmarks/out/bench_predictor] [--json OUT] [--skip-fit-time]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from predictor.crossval import ENSEMBLE, cross_validate, default_models, format_table
from predictor.ensemble import MLPEnsemble

# (name, samples file, accuracy file)
REFERENCE_SETS = [
    ("ResNet-20 CIFAR-10", "res20_sample_result_400.npy", "res20_acc_result_400.npy"),
    ("ResNet-18 ImageNet", "resnet18_sample.npy", "resnet18_acc.npy"),
    ("MobileNetV2 ImageNet", "mobilenetv2_sample.npy", "mobilenetv2_acc.npy"),
]
EXPLICIT, FREE = "explicit directions", "unconstrained"
MODES = (EXPLICIT, FREE)
BASELINES = ("ridge", "gp", "random-forest")
# Tau difference below which the unconstrained ensemble counts as no worse than a baseline:
# none; a tie or better is required. Stated so the done-when check is one number.
TAU_SLACK = 0.0


def default_data_dir() -> Path:
    """../shared/reference/seernet-official relative to the repository root."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "seernet-official"


def column_signs(X: np.ndarray) -> np.ndarray:
    """Direction of accuracy in each raw column: -1 for pruning ratios, +1 for bit-widths.

    Ratios (fraction removed) lie in [0, 1]; bit-widths are >= 2. A column is told apart
    by its values, which also catches MobileNetV2's layout (106 bit-width columns, then
    48 ratios, not the 102 + 52 its README row says).
    """
    return np.where(X.max(axis=0) <= 1.0, -1.0, 1.0)


def min_max_scale(X: np.ndarray) -> np.ndarray:
    """Every column to [0, 1], directions unchanged (no flip); constant columns become 0."""
    lo, hi = X.min(axis=0), X.max(axis=0)
    return (X - lo) / np.where(hi > lo, hi - lo, 1.0)


def mode_params(mode: str, signs: np.ndarray) -> dict:
    """MLPEnsemble parameters of one mode, beyond its defaults."""
    return {"monotone": [int(s) for s in signs]} if mode == EXPLICIT else {}


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-")


def cached_cv(
    out_dir: Path, set_name: str, mode: str, seed: int, X: np.ndarray, y: np.ndarray, models: dict
) -> dict:
    """Scores of ``models`` on (X, y) by 5-fold CV, from ``out_dir`` when already computed.

    The stored file records the models' parameters; a file made with other parameters
    (e.g. changed MLPEnsemble defaults) is recomputed.
    """
    path = out_dir / f"{_slug(set_name)}__{_slug(mode)}__seed{seed}.json"
    params = {name: repr(est.get_params(deep=True)) for name, est in models.items()}
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("params") == params:
            return stored
    start = time.perf_counter()
    result = cross_validate(X, y, k=5, seed=seed, models=models)
    stored = {
        "set": set_name,
        "mode": mode,
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "params": params,
        "scores": {
            m: {
                "rmse": s.rmse,
                "kendall_tau": s.kendall_tau,
                "spearman_rho": s.spearman_rho,
                "calibration": s.calibration(y),
                "fold_tau": s.fold_tau,
            }
            for m, s in result.scores.items()
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored, indent=2))
    return stored


def bench_set(data_dir: Path, out_dir: Path, entry: tuple[str, str, str], seed: int) -> dict:
    """Baselines once, the ensemble once per mode; return {row label: scores}."""
    name, xs_file, ys_file = entry
    raw = np.load(data_dir / xs_file).astype(np.float64)
    y = np.load(data_dir / ys_file).astype(np.float64)
    X, signs = min_max_scale(raw), column_signs(raw)
    every = default_models(X.shape[1], seed)
    base = cached_cv(out_dir, name, "baselines", seed, X, y, {b: every[b] for b in BASELINES})
    rows = {}
    for mode in MODES:
        model = default_models(X.shape[1], seed, mode_params(mode, signs))[ENSEMBLE]
        done = cached_cv(out_dir, name, mode, seed, X, y, {ENSEMBLE: model})
        rows[f"{ENSEMBLE} ({mode})"] = done["scores"][ENSEMBLE]
    rows.update(base["scores"])
    n_down = int((signs < 0).sum())
    print(
        f"\n{name}: {X.shape[0]} samples x {X.shape[1]} dims "
        f"({n_down} pruning ratios: -1, {X.shape[1] - n_down} bit-widths: +1), "
        f"KFold(5, shuffle, seed={seed})"
    )
    print(score_table(rows))
    return rows


def score_table(rows: dict) -> str:
    """One aligned line per model: RMSE, Kendall tau, Spearman rho, within 1 / 2 std."""
    head = ["model", "RMSE", "Kendall tau", "Spearman rho", "within 1 std", "within 2 std"]
    lines = []
    for label, s in rows.items():
        cal = ["-", "-"] if s["calibration"] is None else [f"{c:.2f}" for c in s["calibration"]]
        lines.append(
            [label, f"{s['rmse']:.3f}", f"{s['kendall_tau']:.3f}", f"{s['spearman_rho']:.3f}", *cal]
        )
    return format_table(head, lines)


def verdicts(results: dict) -> list[str]:
    """The issue's done-when lines: (a) tau above every baseline, (b) no worse than them."""
    lines = []
    for mode, need in ((EXPLICIT, "above"), (FREE, "no worse than")):
        misses = []
        for name, rows in results.items():
            tau = rows[f"{ENSEMBLE} ({mode})"]["kendall_tau"]
            rmse = rows[f"{ENSEMBLE} ({mode})"]["rmse"]
            best_tau = max((rows[b]["kendall_tau"], b) for b in BASELINES)
            best_rmse = min((rows[b]["rmse"], b) for b in BASELINES)
            ok = tau > best_tau[0] if mode == EXPLICIT else tau >= best_tau[0] - TAU_SLACK
            if not ok:
                misses.append(name)
            lines.append(
                f"{mode:>19} | {name:<20}: tau {tau:.3f} vs best baseline {best_tau[0]:.3f} "
                f"({best_tau[1]}) {tau - best_tau[0]:+.3f}; RMSE {rmse:.3f} vs best "
                f"{best_rmse[0]:.3f} ({best_rmse[1]}) {rmse - best_rmse[0]:+.3f}"
            )
        verdict = "met" if not misses else f"MISSED on {', '.join(misses)}"
        lines.append(f"{mode:>19} | target (tau {need} ridge, GP and RF on all three): {verdict}")
    return lines


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


def report_fit_time(results: dict) -> None:
    """Print and record the fit time of the default ensemble and of the sampler's 5 members."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--seed", type=int, default=0, help="KFold and model seed (default 0)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "out" / "bench_predictor",
        help="folder of finished (set, mode, seed) results, reused on a rerun",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--skip-fit-time", action="store_true", help="skip the fit-time lines")
    args = parser.parse_args()
    if not (args.data_dir / REFERENCE_SETS[0][1]).is_file():
        parser.exit(2, f"error: no reference samples in {args.data_dir}; pass --data-dir.\n")
    print("RMSE, Kendall tau, Spearman rho: mean over the 5 held-out folds (as in the README);")
    print("within k std: fraction of pooled out-of-fold points with |y - mean| <= k * std.")
    cv = {
        entry[0]: bench_set(args.data_dir, args.out, entry, args.seed) for entry in REFERENCE_SETS
    }
    print()
    print("\n".join(verdicts(cv)))
    results: dict = {"cv": cv}
    if not args.skip_fit_time:
        print()
        report_fit_time(results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
