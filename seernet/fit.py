"""``fit-predictor``: cross-validate the MLP ensemble against baselines, fit it on all samples."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from seernet.context import RunContext
from seernet.errors import UserError


def load_samples(ctx: RunContext) -> tuple[np.ndarray, np.ndarray]:
    """Encoded policies and accuracies of the workspace's store (every strategy)."""
    from seernet.collect import STORE_NAME
    from seernet.store import SampleStore

    with SampleStore.open(ctx.ws.path(STORE_NAME), fingerprint=ctx.space.fingerprint) as store:
        X, y = store.encoded, store.accuracy
    if not np.isfinite(y).all():
        raise UserError(f"{ctx.ws.path(STORE_NAME)} holds NaN or infinite accuracies; re-collect into a new --workdir")
    return X, y


def cross_validate_samples(X: np.ndarray, y: np.ndarray, folds: int, seed: int):  # noqa: ANN201 - CVResult
    """k-fold CV of the ensemble and the ridge / GP / random-forest baselines on the same folds."""
    from predictor.crossval import cross_validate

    if len(y) < max(10, folds):
        raise UserError(f"{len(y)} samples are too few for {folds}-fold cross-validation (need at least {max(10, folds)}): collect more")
    try:
        with warnings.catch_warnings():
            # The GP baseline's optimiser often sits at a bound; that is not the user's problem.
            warnings.simplefilter("ignore", ConvergenceWarning)
            return cross_validate(X, y, k=folds, seed=seed)
    except ValueError as exc:
        raise UserError(f"cannot cross-validate these samples: {exc}") from exc


def fit_and_save(ctx: RunContext, X: np.ndarray, y: np.ndarray, cv, seed: int, path: Path):  # noqa: ANN001, ANN201
    """Fit the ensemble on every sample, save it atomically with its metadata, and return it.

    The saved metadata carries the cross-validated scores, including the out-of-fold
    coverage of the calibrated spread (fractions within 1 and 2 std).
    """
    from predictor.crossval import ENSEMBLE
    from predictor.ensemble import MLPEnsemble

    model = MLPEnsemble(random_state=seed).fit(X, y)
    s = cv.scores[ENSEMBLE]
    meta = {
        "space_fingerprint": ctx.space.fingerprint, "input_dim": int(X.shape[1]), "n_samples": int(len(y)),
        "seed": seed, "cv": {"folds": cv.k, "rmse": s.rmse, "kendall_tau": s.kendall_tau,
                             "spearman_rho": s.spearman_rho, "calibration": list(cv.calibration or [])},
    }  # fmt: skip
    tmp = path.with_name(path.name + ".tmp")
    model.save(tmp, meta)
    os.replace(tmp, path)
    return model


def trust_lines(model, cv) -> list[str]:  # noqa: ANN001 - MLPEnsemble, CVResult
    """What the saved predictor promises: out-of-fold coverage of its spread, and its cap."""
    lines = []
    if cv.calibration is not None:
        one, two = cv.calibration
        target = "" if model.coverage is None else f"; spread scaled for {model.coverage:.0%} within 2 std"
        lines.append(
            f"ensemble spread, out-of-fold over {len(cv.y)} samples: {one:.0%} within 1 std, "
            f"{two:.0%} within 2 std{target}"
        )
    if model.cap_source_ == "given":
        lines.append(f"predictions capped at {model.cap_:.2f} (given)")
    elif model.cap_ is not None:
        how = "best measured base policy" if model.cap_source_ == "base policy" else "best sample (base policy not measured)"
        noise = "repeated measurements" if model.noise_source_ == "repeats" else "fit residuals"
        lines.append(f"predictions capped at {model.cap_:.2f}: {how} + {model.noise_std_:.2f} noise margin from {noise}")
    return lines


def plot_cv(y: np.ndarray, mean: np.ndarray, std: np.ndarray, path: Path) -> None:
    """Cross-validated predicted vs measured accuracy, with +/- one std bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.errorbar(y, mean, yerr=std, fmt="o", ms=3, alpha=0.6, capsize=2)
    lo, hi = float(min(y.min(), mean.min())), float(max(y.max(), mean.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("measured val accuracy (%)")
    ax.set_ylabel("predicted (out-of-fold) accuracy (%)")
    ax.set_title("MLP ensemble, cross-validated")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
