"""Monotone directions are explicit: none by default, per-input signs when given, kept on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from predictor.calibration import best_corner_rows, resolve_signs
from predictor.ensemble import MLPEnsemble
from predictor.metrics import kendall_tau

SMALL = {"hidden": (32, 32), "max_epochs": 150, "n_members": 3, "coverage": None}
D = 6
# Falling in input 0, rising in input 1, free (and wiggling) in input 2, ignored elsewhere.
SIGNS = np.array([-1.0, 1.0, 0.0, 0.0, 0.0, 0.0])


def _falling(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs in [0, 1]^D; the target falls with input 0 and rises with input 1."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, D))
    y = -2 * X[:, 0] + X[:, 1] + 0.3 * np.sin(6 * X[:, 2]) + 0.02 * rng.normal(size=n)
    return X, y


@pytest.fixture(scope="module")
def signed() -> MLPEnsemble:
    torch.set_num_threads(1)
    return MLPEnsemble(**SMALL, monotone=SIGNS, random_state=0).fit(*_falling(150, seed=0))


def test_the_default_is_unconstrained_and_fits_a_falling_target():
    X, y = _falling(150, seed=1)
    model = MLPEnsemble(**SMALL, random_state=0).fit(X, y)
    assert model.monotone is None and model.monotone_signs_ is None
    X_test, y_test = _falling(200, seed=2)
    assert kendall_tau(y_test, model.predict(X_test)) > 0.8
    # Told the wrong direction (the old hidden default), it cannot follow input 0.
    wrong = MLPEnsemble(**SMALL, monotone=True, random_state=0).fit(X, y)
    assert kendall_tau(y_test, wrong.predict(X_test)) < 0.5


unit_rows = arrays(np.float64, D, elements=st.floats(0.0, 1.0))


@settings(max_examples=50, deadline=None)
@given(x=unit_rows, step=st.floats(1e-3, 2.0))
def test_a_minus_one_sign_makes_predictions_non_increasing(signed, x, step):
    raised = x.copy()
    raised[0] += step  # beyond [0, 1] too: the constraint holds everywhere
    before, after = signed.predict(np.stack([x, raised]))
    assert after <= before


def test_explicit_signs_still_fit(signed):
    X_test, y_test = _falling(200, seed=3)
    assert kendall_tau(y_test, signed.predict(X_test)) > 0.8
    grid = np.full((2, D), 0.5)
    grid[:, 0] = [0.1, 0.9]
    assert np.diff(signed.predict(grid))[0] < -1.0  # falls by about 2 x 0.8


@pytest.mark.parametrize(
    ("monotone", "expected"),
    [
        (None, None),
        (False, None),
        (np.zeros(D), None),
        (True, np.ones(D)),
        (np.bool_(True), np.ones(D)),
        (SIGNS, SIGNS),
        ([-1, 1, 0, 0, 0, 0], SIGNS),
    ],
)
def test_resolve_signs(monotone, expected):
    got = resolve_signs(monotone, D)
    assert (got is None) if expected is None else np.array_equal(got, expected)


def test_without_directions_no_row_is_the_best_corner():
    X = np.array([[1.0, 1.0], [0.0, 0.5]])
    assert not best_corner_rows(X, None).any()
    assert best_corner_rows(X, np.ones(2)).tolist() == [True, False]
    assert best_corner_rows(X, np.array([-1.0, 0.0])).tolist() == [False, True]


def test_unconstrained_cap_is_the_best_measurement():
    X, y = _falling(60, seed=4)
    X[0], y[0] = 1.0, -5.0  # the all-ones row is no best policy here
    model = MLPEnsemble(**SMALL).fit(X, y)
    assert model.cap_source_ == "max(y)"
    assert model.cap_ == pytest.approx(y.max() + model.noise_std_)


@pytest.mark.parametrize("monotone", [None, True, SIGNS])
def test_round_trip_keeps_the_signs(tmp_path, monotone):
    X, y = _falling(60, seed=5)
    fitted = MLPEnsemble(**{**SMALL, "max_epochs": 30}, monotone=monotone).fit(X, y)
    path = tmp_path / "predictor.pt"
    fitted.save(path)
    header = json.loads(torch.load(path, weights_only=True)["header"])
    loaded, _ = MLPEnsemble.load(path)
    if monotone is None:
        assert header["monotone_signs"] is None and loaded.monotone_signs_ is None
        assert loaded.monotone is None
    else:
        expected = np.ones(D) if monotone is True else SIGNS
        assert header["monotone_signs"] == expected.astype(int).tolist()
        assert np.array_equal(loaded.monotone_signs_, expected)
        assert np.array_equal(resolve_signs(loaded.monotone, D), expected)
    assert np.array_equal(fitted.predict(X), loaded.predict(X))


def test_a_file_from_when_monotone_was_the_default_loads_monotone(tmp_path):
    """Files written before the default changed say ``"monotone": true``; they stay monotone."""
    X, y = _falling(60, seed=6)
    fitted = MLPEnsemble(**{**SMALL, "max_epochs": 30}, monotone=True).fit(X, y)
    path = tmp_path / "old.pt"
    fitted.save(path)
    blob = torch.load(path, weights_only=True)
    header = json.loads(blob["header"])
    assert header["params"]["monotone"] is True and header["version"] == 2
    loaded, _ = MLPEnsemble.load(path)
    assert loaded.monotone is True and np.array_equal(loaded.monotone_signs_, np.ones(D))
    grid = np.full((2, D), 0.5)
    grid[:, 0] = [0.1, 0.9]
    lo, hi = loaded.predict(grid)
    assert hi >= lo
