"""What the predictor may promise: monotone in the directions it is given, capped, with a calibrated spread."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from predictor.calibration import repeat_noise_std
from predictor.ensemble import MLPEnsemble
from predictor.metrics import calibration

SMALL = {"hidden": (32, 32), "max_epochs": 150, "n_members": 4, "coverage": None}
CALIBRATED = {**SMALL, "coverage": 0.95}
D = 30


@pytest.fixture(scope="module")
def base_data(make_data) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic samples plus the measured base (all-ones) policy, as every store has."""
    X, y = make_data(200, seed=0)
    X_base, y_base = make_data(1, seed=9, low=1.0, high=1.0)
    return np.vstack([X, X_base]), np.append(y, y_base)


@pytest.fixture(scope="module")
def model(base_data) -> MLPEnsemble:
    """Increasing in every input (``monotone=True``), as seernet's codec asks."""
    torch.set_num_threads(1)
    return MLPEnsemble(**SMALL, monotone=True, random_state=1).fit(*base_data)


unit_rows = arrays(np.float64, D, elements=st.floats(0.0, 1.0))


@settings(max_examples=60, deadline=None)
@given(x=unit_rows, dim=st.integers(0, D - 1), step=st.floats(1e-3, 2.0))
def test_raising_any_input_never_lowers_the_prediction(model, x, dim, step):
    raised = x.copy()
    raised[dim] += step  # also beyond the encoded range: monotone everywhere, not only in [0, 1]
    lo, hi = model.predict(np.stack([x, raised]))
    assert hi >= lo


SIGNS = np.array([-1.0] * 10 + [0.0] * 10 + [1.0] * 10)


@pytest.fixture(scope="module")
def partly(make_data) -> MLPEnsemble:
    """Decreasing in inputs 0-9, free in 10-19 (where the target wiggles), increasing in 20-29;
    with the linear skip path, whose weights are sign-constrained too."""
    torch.set_num_threads(1)
    X, _ = make_data(150, seed=3)
    y = X[:, 20:].sum(axis=1) - X[:, :10].sum(axis=1) + np.sin(6 * X[:, 10])
    return MLPEnsemble(**SMALL, monotone=SIGNS, linear_skip=True, random_state=0).fit(X, y)


@settings(max_examples=40, deadline=None)
@given(x=unit_rows, dim=st.integers(0, D - 1), step=st.floats(1e-3, 1.0))
def test_each_input_follows_its_direction(partly, x, dim, step):
    raised = x.copy()
    raised[dim] += step
    lo, hi = partly.predict(np.stack([x, raised]))
    if SIGNS[dim] > 0:
        assert hi >= lo
    elif SIGNS[dim] < 0:
        assert hi <= lo


def test_free_inputs_may_go_either_way(partly):
    x = np.full((2, D), 0.5)
    x[:, 10] = [0.25, 0.75]  # sin(6 x) falls from 1.0 to -0.98 between these
    lo, hi = partly.predict(x)
    assert hi < lo


def test_monotone_false_can_fit_a_falling_input(make_data):
    X, _ = make_data(150, seed=4)
    y = -3 * X[:, 0]
    free = MLPEnsemble(**SMALL, monotone=False).fit(X, y)
    tied = MLPEnsemble(**SMALL, monotone=True).fit(X, y)
    grid = np.tile(X[:1], (2, 1))
    grid[:, 0] = [0.1, 0.9]
    assert np.diff(free.predict(grid))[0] < -1.0
    assert np.diff(tied.predict(grid))[0] >= 0.0


def test_cap_is_the_measured_base_policy_plus_noise(model, base_data):
    X, y = base_data
    assert model.cap_source_ == "base policy" and model.noise_source_ == "residuals"
    residual_rms = np.sqrt(np.mean((y - model.predict(X)) ** 2))
    assert model.cap_ == pytest.approx(y[-1] + model.noise_std_)
    assert 0 < model.noise_std_ < 3 * residual_rms


def test_predictions_never_exceed_the_cap(model, make_data):
    X, _ = make_data(500, seed=5)
    adversarial = np.vstack([np.ones(D), np.full(D, 5.0), np.full(D, 1e3), X])
    assert np.all(model.predict(np.vstack([X, adversarial])) <= model.cap_)
    # Gradient ascent on the input, as the solver does, cannot climb past the cap either.
    x = torch.full((8, D), 0.5, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.5)
    for _ in range(50):
        opt.zero_grad()
        mean, _ = model.mean_std_torch(x)
        (-mean.sum()).backward()
        opt.step()
    mean, _ = model.mean_std_torch(x.detach())
    assert torch.all(mean <= model.cap_) and x.min() > 1.0  # it did climb, far out of [0, 1]


def test_cap_from_repeats_and_explicit_cap(make_data):
    X, y = make_data(120, seed=6)
    X = np.vstack([X, X[:3], X[:3]])
    y = (
        np.append(y, y[:3] + [0.1, -0.1, 0.0]).tolist()
        + (np.array(y[:3]) - [0.1, 0.1, 0.2]).tolist()
    )
    y = np.asarray(y)
    fitted = MLPEnsemble(**SMALL).fit(X, y)
    assert fitted.noise_source_ == "repeats"
    assert fitted.noise_std_ == pytest.approx(repeat_noise_std(X, y))
    assert fitted.cap_source_ == "max(y)" and fitted.cap_ == pytest.approx(
        y.max() + fitted.noise_std_
    )
    given_cap = MLPEnsemble(**SMALL, cap=2.0).fit(X, y)
    assert given_cap.cap_ == 2.0 and np.all(given_cap.predict(np.ones((1, D))) <= 2.0)
    assert MLPEnsemble(**SMALL, cap=None).fit(X, y).cap_ is None


def test_repeat_noise_std_is_the_pooled_within_policy_std():
    X = np.array([[0.0], [0.0], [1.0], [1.0], [1.0], [2.0]])
    y = np.array([1.0, 3.0, 0.0, 1.0, 2.0, 9.0])
    # Squared deviations 1 + 1 and 1 + 0 + 1 over (2 - 1) + (3 - 1) degrees of freedom.
    assert repeat_noise_std(X, y) == pytest.approx(np.sqrt(4 / 3))
    assert repeat_noise_std(X[[0, 2, 5]], y[[0, 2, 5]]) is None


def test_spread_is_calibrated_on_held_out_points(make_data):
    X, y = make_data(300, seed=7)
    X_test, y_test = make_data(400, seed=8)
    fitted = MLPEnsemble(**CALIBRATED, random_state=2).fit(X, y)
    raw = MLPEnsemble(**SMALL, random_state=2).fit(X, y)
    within1, within2 = calibration(y_test, *fitted.predict(X_test, return_std=True))
    raw2 = calibration(y_test, *raw.predict(X_test, return_std=True))[1]
    assert 0.85 <= within2 <= 0.995 and 0.5 <= within1 <= within2
    assert raw.std_scale_ == 1.0 and fitted.std_scale_ > 1.0 and raw2 < within2
    one, two = fitted.calibration_coverage_
    assert two >= 0.95 and one <= two


def test_round_trip_keeps_the_new_state(tmp_path, base_data):
    signs = np.ones(D)
    signs[:5] = 0
    fitted = MLPEnsemble(**CALIBRATED, monotone=signs, linear_skip=True, random_state=4).fit(
        *base_data
    )
    path = tmp_path / "predictor.pt"
    fitted.save(path, {"k": 1})
    loaded, _ = MLPEnsemble.load(path)
    for name in (
        "cap_",
        "cap_source_",
        "cap_width_",
        "noise_std_",
        "noise_source_",
        "std_scale_",
        "calibration_coverage_",
    ):
        assert getattr(loaded, name) == getattr(fitted, name), name
    assert np.array_equal(loaded.monotone_signs_, signs)
    assert list(loaded.monotone) == list(signs)
    x = np.vstack([np.ones(D), base_data[0][:20]])
    for a, b in zip(
        fitted.predict(x, return_std=True), loaded.predict(x, return_std=True), strict=True
    ):
        assert np.array_equal(a, b)


def test_files_of_the_old_format_are_refused(tmp_path, model):
    path = tmp_path / "old.pt"
    model.save(path, {})
    blob = torch.load(path, weights_only=True)
    header = json.loads(blob["header"])
    header["version"] = 1
    blob["header"] = json.dumps(header)
    torch.save(blob, path)
    with pytest.raises(ValueError, match="version 1.*refit it"):
        MLPEnsemble.load(path)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"monotone": [1, 0]},
            r"monotone must be None, True, False or one entry of -1, 0 or \+1 per input \(30\)",
        ),
        ({"monotone": np.full(D, 2)}, "monotone must be"),
        ({"coverage": 1.5}, r"coverage must be in \(0, 1\) or None"),
        ({"cap": "high"}, "cap must be 'auto', a number or None"),
        ({"cap": float("nan")}, "cap must be a finite number"),
        ({"calibration_folds": 1}, "calibration_folds must be at least 2"),
        ({"huber_delta": 0.0}, "huber_delta must be positive or None"),
        (
            {"activation": "silu", "monotone": True},
            "monotone predictor needs a monotone activation",
        ),
    ],
)
def test_bad_params_raise_one_clear_sentence(make_data, params, match):
    X, y = make_data(20, seed=0)
    with pytest.raises(ValueError, match=match) as err:
        MLPEnsemble(**{**SMALL, **params}).fit(X, y)
    assert "\n" not in str(err.value)
