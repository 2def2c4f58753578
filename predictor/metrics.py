"""Regression metrics for a predictor: error, rank agreement and calibration of its std."""

from __future__ import annotations

import numpy as np
from scipy import stats


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error, in target units."""
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2)))


def kendall_tau(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Kendall's tau-b: how often the predictor orders a pair of policies correctly."""
    return float(stats.kendalltau(y_true, y_pred).statistic)


def spearman_rho(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Spearman's rank correlation."""
    return float(stats.spearmanr(y_true, y_pred).statistic)


def calibration(y_true: np.ndarray, mean: np.ndarray, std: np.ndarray) -> tuple[float, float]:
    """Fractions of points with |y - mean| <= 1 std and <= 2 std (0.68 and 0.95 if Gaussian)."""
    err = np.abs(np.asarray(y_true, dtype=np.float64) - np.asarray(mean, dtype=np.float64))
    std = np.asarray(std, dtype=np.float64)
    return float(np.mean(err <= std)), float(np.mean(err <= 2 * std))
