"""Saving and loading an MLPEnsemble: tensors and JSON only, identical predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from predictor.ensemble import MLPEnsemble


@pytest.fixture
def fitted(make_data) -> MLPEnsemble:
    X, y = make_data(80, seed=0)
    return MLPEnsemble(hidden=(32, 32), max_epochs=40, n_members=3, random_state=3).fit(X, y)


def test_round_trip_identical_predictions(fitted, make_data, tmp_path):
    path = tmp_path / "predictor.pt"
    meta = {"space": "abc123", "n_samples": 80, "cv": {"kendall_tau": 0.9}}
    fitted.save(path, meta)
    loaded, loaded_meta = MLPEnsemble.load(path)
    X, _ = make_data(25, seed=1)
    mean, std = fitted.predict(X, return_std=True)
    mean2, std2 = loaded.predict(X, return_std=True)
    assert np.array_equal(mean, mean2) and np.array_equal(std, std2)
    assert loaded_meta == meta
    assert loaded.get_params() == fitted.get_params()


def test_file_is_plain_tensors_and_json(fitted, tmp_path):
    path = tmp_path / "predictor.pt"
    fitted.save(path, {"seed": 0})
    blob = torch.load(path, weights_only=True)
    header = json.loads(blob["header"])
    assert header["n_features_in"] == 30
    assert header["params"]["hidden"] == [32, 32]
    assert header["params"]["n_members"] == 3
    assert all(isinstance(v, torch.Tensor) for v in blob["state"].values())


def test_unserialisable_metadata_is_rejected(fitted, tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        fitted.save(tmp_path / "p.pt", {"array": np.zeros(3)})


def test_corrupt_or_foreign_files_are_rejected(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable predictor file"):
        MLPEnsemble.load(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"header": json.dumps({"format": "something-else"})}, foreign)
    with pytest.raises(ValueError, match="not an MLPEnsemble"):
        MLPEnsemble.load(foreign)
