"""K-fold comparison of the MLP ensemble against scikit-learn baselines on the same folds."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import RandomForestRegressor
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from predictor.ensemble import MLPEnsemble
from predictor.metrics import calibration, kendall_tau, rmse, spearman_rho

ENSEMBLE = "mlp-ensemble"
PREDICTOR = "prior-model"  # seernet's predictor (``predictor.prior_model``)
MIN_SAMPLES = 10


def baseline_models(n_features: int, seed: int = 0) -> dict[str, Any]:
    """Ridge, GP and random forest, each behind a per-fold StandardScaler."""
    # The RBF starts at sqrt(D), the typical distance between standardised points:
    # from sklearn's default of 1.0 the optimiser can stall with all signal as noise.
    kernel = ConstantKernel() * RBF(length_scale=np.sqrt(n_features)) + WhiteKernel()
    models = {
        "ridge": RidgeCV(alphas=np.logspace(-3, 3, 13)),
        "gp": GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed),
        "random-forest": RandomForestRegressor(random_state=seed),
    }
    return {name: make_pipeline(StandardScaler(), est) for name, est in models.items()}


def default_models(
    n_features: int, seed: int = 0, ensemble: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The MLP ensemble and the three baselines, each behind a per-fold StandardScaler.

    ``ensemble`` holds extra MLPEnsemble parameters (e.g. ``monotone`` signs: the
    scaler's positive scale keeps every input's direction).
    """
    mlp = make_pipeline(StandardScaler(), MLPEnsemble(random_state=seed, **(ensemble or {})))
    return {ENSEMBLE: mlp, **baseline_models(n_features, seed)}


@dataclass
class ModelScores:
    """Fold-averaged scores of one model, plus its pooled out-of-fold predictions."""

    rmse: float
    kendall_tau: float
    spearman_rho: float
    oof_mean: np.ndarray
    oof_std: np.ndarray | None = None
    fold_tau: list[float] = field(default_factory=list)

    def calibration(self, y: np.ndarray) -> tuple[float, float] | None:
        """Fractions of out-of-fold points within 1 and 2 predicted std, if the model has a std."""
        return None if self.oof_std is None else calibration(y, self.oof_mean, self.oof_std)


@dataclass
class CVResult:
    """Per-model scores from ``cross_validate``.

    RMSE, Kendall tau and Spearman rho are computed on each held-out fold and averaged
    over the k folds (how the reference baselines were reported). Out-of-fold means and
    stds, and the calibration derived from them, are pooled over all samples.
    """

    y: np.ndarray
    k: int
    seed: int
    scores: dict[str, ModelScores]
    primary: str = ENSEMBLE  # the model whose out-of-fold figures the properties give

    @property
    def oof_mean(self) -> np.ndarray:
        """Out-of-fold mean of the primary model for every sample."""
        return self.scores[self.primary].oof_mean

    @property
    def oof_std(self) -> np.ndarray | None:
        """Out-of-fold std of the primary model for every sample."""
        return self.scores[self.primary].oof_std

    @property
    def calibration(self) -> tuple[float, float] | None:
        """The primary model's pooled fractions within 1 and 2 std."""
        return self.scores[self.primary].calibration(self.y)

    def table(self) -> str:
        """Aligned text table, one row per model."""
        head = ["model", "RMSE", "Kendall tau", "Spearman rho", "within 1 std", "within 2 std"]
        rows = []
        for name, s in self.scores.items():
            cal = s.calibration(self.y)
            cal_cells = ["-", "-"] if cal is None else [f"{c:.2f}" for c in cal]
            rows.append([name, f"{s.rmse:.3f}", f"{s.kendall_tau:.3f}", f"{s.spearman_rho:.3f}"])
            rows[-1] += cal_cells
        return format_table(head, rows)


def format_table(head: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell: first column left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *map(line, rows)])


def cross_validate(
    X: Any,
    y: Any,
    k: int = 5,
    seed: int = 0,
    models: Mapping[str, Any] | None = None,
    ensemble: Mapping[str, Any] | None = None,
) -> CVResult:
    """Fit every model on the same ``KFold(k, shuffle=True, random_state=seed)`` folds.

    The first model is the primary one (``CVResult.oof_mean`` and friends). Without
    ``models``, the default ones, the ensemble built with the extra parameters
    in ``ensemble`` (e.g. ``{"monotone": signs}``; see ``default_models``).
    """
    X, y = _validate(X, y, k)
    if models is None:
        models = default_models(X.shape[1], seed, ensemble)
    elif ensemble is not None:
        raise ValueError("pass either models or ensemble parameters, not both.")
    models = dict(models)
    folds = list(KFold(k, shuffle=True, random_state=seed).split(X))
    scores = {name: _score_model(est, X, y, folds) for name, est in models.items()}
    return CVResult(y=y, k=k, seed=seed, scores=scores, primary=next(iter(models)))


def _score_model(estimator: Any, X: np.ndarray, y: np.ndarray, folds: list) -> ModelScores:
    """Out-of-fold predictions of one model and its fold-averaged scores."""
    mean, std = np.empty_like(y), np.empty_like(y)
    has_std = _has_std(estimator)
    per_fold = []
    for train, test in folds:
        est = clone(estimator).fit(X[train], y[train])
        if has_std:
            mean[test], std[test] = est.predict(X[test], return_std=True)
        else:
            mean[test] = est.predict(X[test])
        yt, pt = y[test], mean[test]
        per_fold.append((rmse(yt, pt), kendall_tau(yt, pt), spearman_rho(yt, pt)))
    r, tau, rho = np.mean(per_fold, axis=0)
    return ModelScores(
        rmse=float(r),
        kendall_tau=float(tau),
        spearman_rho=float(rho),
        oof_mean=mean,
        oof_std=std if has_std else None,
        fold_tau=[f[1] for f in per_fold],
    )


def _has_std(estimator: Any) -> bool:
    """Whether the (last step of the) estimator's predict accepts ``return_std``."""
    final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    return "return_std" in inspect.signature(final.predict).parameters


def _validate(X: Any, y: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return float arrays or raise ValueError with one sentence saying what is wrong."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (samples x features), got shape {X.shape}.")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"y must be 1-D with one value per row of X ({X.shape[0]}), got {y.shape}."
        )
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("X and y must not contain NaN or infinite values.")
    if int(k) < 2:
        raise ValueError(f"k must be at least 2 folds, got {k}.")
    n = X.shape[0]
    if n < max(MIN_SAMPLES, k):
        raise ValueError(
            f"cross-validation needs at least {max(MIN_SAMPLES, k)} samples for {k} folds, got {n}."
        )
    return X, y
