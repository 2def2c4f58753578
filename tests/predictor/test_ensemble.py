"""MLPEnsemble: accuracy on a smooth toy problem, uncertainty, gradients, sklearn contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score

from predictor.ensemble import MLPEnsemble
from predictor.metrics import kendall_tau

# Small and short so that each fit takes well under a second on one core; the spread's
# calibration (three more fits) is tested in test_trust.py.
FAST = {"hidden": (64, 64), "max_epochs": 200, "coverage": None}


@pytest.fixture(scope="module")
def fitted(make_data) -> MLPEnsemble:
    torch.set_num_threads(1)
    X, y = make_data(300, seed=0)
    return MLPEnsemble(**FAST).fit(X, y)


def test_ranks_held_out_points(fitted, make_data):
    X_test, y_test = make_data(200, seed=1)
    assert kendall_tau(y_test, fitted.predict(X_test)) >= 0.8


def test_std_grows_away_from_training_data(make_data):
    X, y = make_data(300, seed=0, high=0.5)
    model = MLPEnsemble(**FAST).fit(X, y)
    X_near, _ = make_data(200, seed=1, high=0.5)
    X_far, _ = make_data(200, seed=2, low=0.8, high=1.0)
    _, std_near = model.predict(X_near, return_std=True)
    _, std_far = model.predict(X_far, return_std=True)
    assert np.median(std_far) > 2 * np.median(std_near)


def test_mean_std_torch_matches_predict(fitted, make_data):
    X, _ = make_data(20, seed=3)
    mean, std = fitted.predict(X, return_std=True)
    t_mean, t_std = fitted.mean_std_torch(torch.as_tensor(X, dtype=torch.float32))
    np.testing.assert_allclose(t_mean.numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(t_std.numpy(), std, rtol=1e-5)


def test_gradients_match_finite_differences(fitted, make_data):
    X, _ = make_data(4, seed=4)
    x = torch.as_tensor(X, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(fitted.mean_std_torch, (x,), eps=1e-6, atol=1e-5)


def test_same_seed_same_predictions_other_seed_differs(make_data):
    X, y = make_data(100, seed=0)
    quick = {"hidden": (32,), "max_epochs": 60}  # calibrated: its cross-fits are seeded too
    a = MLPEnsemble(**quick, random_state=7).fit(X, y).predict(X, return_std=True)
    b = MLPEnsemble(**quick, random_state=7).fit(X, y).predict(X, return_std=True)
    c = MLPEnsemble(**quick, random_state=8).fit(X, y).predict(X, return_std=True)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.allclose(a[0], c[0])


def test_sklearn_contract(make_data):
    X, y = make_data(90, seed=0)
    model = MLPEnsemble(hidden=(32,), max_epochs=30, n_members=3)
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    assert is_regressor(model)
    assert not hasattr(model, "members_")
    assert model.fit(X, y) is model
    assert model.n_features_in_ == X.shape[1] and model.members_.n_members == 3
    scores = cross_val_score(twin, X, y, cv=3)
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_single_member_has_zero_spread(make_data):
    X, y = make_data(50, seed=0)
    _, std = (
        MLPEnsemble(n_members=1, hidden=(16,), max_epochs=20).fit(X, y).predict(X, return_std=True)
    )
    assert np.all(std < 1e-3)


def test_bad_inputs_raise(fitted, make_data):
    X, y = make_data(20, seed=5)
    with pytest.raises(ValueError, match="29 features"):
        fitted.predict(X[:, :29])
    with pytest.raises(ValueError, match="fitted on 30"):
        fitted.mean_std_torch(torch.zeros(3, 31))
    with pytest.raises(ValueError, match="2-D"):
        fitted.mean_std_torch(torch.zeros(30))
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError):
        MLPEnsemble(**FAST).fit(X_nan, y)
    with pytest.raises(NotFittedError):
        MLPEnsemble().predict(X)
    with pytest.raises(ValueError, match="n_members"):
        MLPEnsemble(n_members=0).fit(X, y)
    with pytest.raises(ValueError, match="val_fraction"):
        MLPEnsemble(val_fraction=1.0).fit(X, y)
    with pytest.raises(ValueError, match="activation"):
        MLPEnsemble(activation="sigmoid").fit(X, y)


def test_fit_restores_the_callers_thread_count(make_data):
    X, y = make_data(40, seed=0)
    torch.set_num_threads(2)
    MLPEnsemble(hidden=(8,), max_epochs=5, n_threads=1).fit(X, y)
    assert torch.get_num_threads() == 2
