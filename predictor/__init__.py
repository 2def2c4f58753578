"""Policy -> accuracy predictors. Pure algorithm package: never imports ``seernet``."""

from predictor.crossval import CVResult, cross_validate
from predictor.ensemble import MLPEnsemble
from predictor.metrics import calibration, kendall_tau, rmse, spearman_rho

__all__ = [
    "CVResult",
    "MLPEnsemble",
    "calibration",
    "cross_validate",
    "kendall_tau",
    "rmse",
    "spearman_rho",
]
