"""Predictor metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from predictor.metrics import calibration, kendall_tau, rmse, spearman_rho


def test_rmse():
    assert rmse([1.0, 2.0, 3.0], [1.0, 2.0, 5.0]) == pytest.approx(np.sqrt(4 / 3))


def test_rank_correlations():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert kendall_tau(y, y**3) == pytest.approx(1.0)
    assert spearman_rho(y, -y) == pytest.approx(-1.0)
    # One swapped pair out of six: (5 - 1) / 6.
    assert kendall_tau(y, [1.0, 3.0, 2.0, 4.0]) == pytest.approx(4 / 6)


def test_calibration_counts_points_within_one_and_two_std():
    y = np.zeros(4)
    mean = np.array([0.5, 1.5, 2.5, 0.0])
    assert calibration(y, mean, np.ones(4)) == (0.5, 0.75)
