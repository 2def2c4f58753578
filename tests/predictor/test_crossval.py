"""cross_validate: same folds for every model, fold-averaged scores, input validation."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from predictor.crossval import ENSEMBLE, cross_validate, default_models
from predictor.ensemble import MLPEnsemble


def _fast_models() -> dict:
    return {
        ENSEMBLE: MLPEnsemble(hidden=(32,), max_epochs=40, n_members=3),
        "ridge": make_pipeline(StandardScaler(), Ridge()),
    }


def test_scores_and_out_of_fold_predictions(make_data):
    X, y = make_data(60, seed=0)
    result = cross_validate(X, y, k=5, seed=0, models=_fast_models())
    assert set(result.scores) == {ENSEMBLE, "ridge"}
    assert result.oof_mean.shape == y.shape and result.oof_std.shape == y.shape
    assert np.all(result.oof_std > 0)
    assert result.scores["ridge"].oof_std is None
    within1, within2 = result.calibration
    assert 0.0 <= within1 <= within2 <= 1.0
    assert result.scores["ridge"].kendall_tau > 0.3


def test_every_model_sees_the_same_folds(make_data):
    X, y = make_data(50, seed=1)
    ridge = make_pipeline(StandardScaler(), Ridge())
    result = cross_validate(X, y, k=5, seed=3, models={"ridge": ridge})
    expected = cross_val_predict(ridge, X, y, cv=KFold(5, shuffle=True, random_state=3))
    np.testing.assert_allclose(result.scores["ridge"].oof_mean, expected)


def test_table_has_one_aligned_row_per_model(make_data):
    X, y = make_data(40, seed=2)
    table = cross_validate(X, y, models=_fast_models()).table()
    lines = table.splitlines()
    assert len(lines) == 4 and lines[2].startswith(ENSEMBLE) and lines[3].startswith("ridge")
    tau_end = lines[0].index("Kendall tau") + len("Kendall tau")
    assert all(line[tau_end - 5 : tau_end].strip() for line in lines[2:])


def test_default_models_are_the_ensemble_and_three_baselines():
    assert list(default_models(7)) == [ENSEMBLE, "ridge", "gp", "random-forest"]


def test_default_ensemble_is_unconstrained_unless_given_directions():
    assert default_models(3)[ENSEMBLE][-1].monotone is None
    signs = [-1, 0, 1]
    assert default_models(3, ensemble={"monotone": signs})[ENSEMBLE][-1].monotone == signs
    with pytest.raises(ValueError, match="either models or ensemble"):
        cross_validate(np.zeros((12, 3)), np.zeros(12), models={}, ensemble={"monotone": signs})


@pytest.mark.parametrize(
    ("X", "y", "k", "match"),
    [
        (np.zeros((8, 3)), np.zeros(8), 5, "at least 10 samples"),
        (np.zeros((12, 3)), np.zeros(12), 20, "at least 20 samples"),
        (np.full((12, 3), np.nan), np.zeros(12), 5, "NaN"),
        (np.zeros((12, 3)), np.full(12, np.inf), 5, "NaN or infinite"),
        (np.zeros(12), np.zeros(12), 5, "2-D"),
        (np.zeros((12, 3)), np.zeros(11), 5, "one value per row"),
        (np.zeros((12, 3)), np.zeros(12), 1, "at least 2 folds"),
    ],
)
def test_bad_inputs_raise_one_clear_error(X, y, k, match):
    with pytest.raises(ValueError, match=match):
        cross_validate(X, y, k=k)


def test_predictor_package_never_imports_the_application():
    root = Path(__file__).resolve().parents[2] / "predictor"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] in {"seernet", "search"} for n in names), path
