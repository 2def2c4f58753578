"""``fit-predictor``: cross-validate the prior model against baselines, fit it on all samples."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from seernet.errors import UserError
from seernet.steps.context import RunContext
from seernet.workspace.artifacts import STORE_NAME


def load_samples(ctx: RunContext) -> tuple[np.ndarray, np.ndarray, int]:
    """Encoded policies, accuracies (every strategy) and val images per accuracy of the store."""
    from seernet.workspace.store import SampleStore

    with SampleStore.open(ctx.ws.path(STORE_NAME), fingerprint=ctx.space.fingerprint) as store:
        X, y, n_val = store.encoded, store.accuracy, val_images(ctx, store.spec.protocol)
    if not np.isfinite(y).all():
        raise UserError(
            f"{ctx.ws.path(STORE_NAME)} holds NaN or infinite accuracies; re-collect into a new --workdir"
        )
    return X, y, n_val


@dataclass(frozen=True)
class Cap:
    """No prediction above the measured base policy + the sampling noise of a val accuracy.

    The base policy (unpruned, highest bits: the all-ones encoding, an anchor of every
    store) is measured with the same protocol as every sample. The margin is one binomial
    standard error, 100 * sqrt(p (1 - p) / n), of an accuracy p measured on the n val
    images: the noise of the measurement itself, not the predictor's fit error.
    """

    base: float
    margin: float
    n_val: int

    @property
    def value(self) -> float:
        return self.base + self.margin


def base_cap(X: np.ndarray, y: np.ndarray, n_val: int) -> Cap | None:
    """The cap of a predictor of (X, y); None when the base policy was never measured."""
    top = np.all(X == 1.0, axis=1)
    if not top.any():
        return None
    best = float(y[top].max())
    p = min(max(best / 100.0, 0.0), 1.0)
    return Cap(best, 100.0 * float(np.sqrt(p * (1.0 - p) / n_val)), n_val)


def val_images(ctx: RunContext, protocol: dict) -> int:
    """How many val images a store's accuracies were measured on (its protocol's val_limit)."""
    limit = protocol.get("val_limit")
    return min(limit or ctx.config.val_size, ctx.config.val_size)


def predictor_tables(ctx: RunContext, protocol: dict | None = None) -> dict:
    """The damage tables the predictor is built on (measured now, with the store's
    ``protocol``, if the workspace lacks them; None reads it from the closed store)."""
    from seernet.compression.protocol import Protocol
    from seernet.steps.sensitivity import damage_table, prior_tables
    from seernet.workspace.store import SampleStore

    if protocol is None:
        with SampleStore.open(ctx.ws.path(STORE_NAME), fingerprint=ctx.space.fingerprint) as store:
            protocol = store.spec.protocol
    return prior_tables(ctx, damage_table(ctx, Protocol(**protocol)))


def make_predictor(X: np.ndarray, y: np.ndarray, seed: int, n_val: int, tables: dict):  # PriorModel
    """The workspace's predictor fitted on (X, y): what fit-predictor saves and solve --refine refits."""
    from predictor.prior_model import PriorModel

    cap = base_cap(X, y, n_val)
    return PriorModel(**tables, cap=None if cap is None else cap.value, random_state=seed).fit(X, y)


def cross_validate_samples(
    X: np.ndarray, y: np.ndarray, folds: int, seed: int, tables: dict
):  # CVResult
    """k-fold CV of the predictor and the ridge / GP / random-forest baselines on the same folds."""
    from predictor.crossval import PREDICTOR, baseline_models, cross_validate
    from predictor.prior_model import PriorModel

    if len(y) < max(10, folds):
        raise UserError(
            f"{len(y)} samples are too few for {folds}-fold cross-validation (need at least {max(10, folds)}): collect more"
        )
    # Within a fold the cap is what that fold's rows say (their base policy, else max(y)).
    models = {
        PREDICTOR: PriorModel(**tables, random_state=seed),
        **baseline_models(X.shape[1], seed),
    }
    try:
        with warnings.catch_warnings():
            # The GP baseline's optimiser often sits at a bound; that is not the user's problem.
            warnings.simplefilter("ignore", ConvergenceWarning)
            return cross_validate(X, y, k=folds, seed=seed, models=models)
    except ValueError as exc:
        raise UserError(f"cannot cross-validate these samples: {exc}") from exc


def fit_and_save(
    ctx: RunContext,
    X: np.ndarray,
    y: np.ndarray,
    n_val: int,
    cv,
    seed: int,
    path: Path,
    tables: dict,
):
    """Fit the predictor on every sample, save it atomically with its metadata, and return it
    (and cache the global ranking's channel counts the fast solve starts from, if missing).

    The saved metadata carries the cross-validated scores, including the out-of-fold
    coverage of the calibrated spread (fractions within 1 and 2 std).
    """
    from seernet.steps.solve import ranking_table

    model = make_predictor(X, y, seed, n_val, tables)
    ranking_table(ctx)  # the fast solve's global-ranking centres, cached once per workspace
    s = cv.scores[cv.primary]
    meta = {
        "space_fingerprint": ctx.space.fingerprint, "input_dim": int(X.shape[1]), "n_samples": int(len(y)),
        "seed": seed, "cv": {"folds": cv.k, "rmse": s.rmse, "kendall_tau": s.kendall_tau,
                             "spearman_rho": s.spearman_rho, "calibration": list(cv.calibration or [])},
    }  # fmt: skip
    tmp = path.with_name(path.name + ".tmp")
    model.save(tmp, meta)
    os.replace(tmp, path)
    return model


def trust_lines(model, cv, cap: Cap | None = None) -> list[str]:  # PriorModel, CVResult
    """What the saved predictor promises: out-of-fold coverage of its spread, and its cap."""
    lines = []
    if cv.calibration is not None:
        one, two = cv.calibration
        lines.append(
            f"spread, out-of-fold over {len(cv.y)} samples: {one:.0%} within 1 std, {two:.0%} within 2 std"
        )
    gp = "" if model.Z_train_ is None else f", GP length {model.gp_length_:.3g} in damage space"
    lines.append(f"spread: {model.sigma0_:.2f} + {model.sigma1_:.3f} x predicted loss, the prior's parameter "
                 f"uncertainty and the residual GP's (grows away from measured policies){gp}")  # fmt: skip
    if cap is not None:
        lines.append(f"predictions capped at {cap.value:.2f}: measured base policy {cap.base:.2f} + {cap.margin:.2f} "
                     f"(sampling std of an accuracy on {cap.n_val} val images)")  # fmt: skip
    else:
        lines.append(
            f"predictions capped at {model.cap_:.2f}: best sample + 1 (base policy not measured)"
        )
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
    ax.set_title("predictor, cross-validated")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
