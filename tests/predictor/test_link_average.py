"""LinkAverage: the members' average, their disagreement in the spread, a faithful file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from predictor.link_average import LinkAverage
from predictor.prior_model import PriorModel
from tests.predictor.test_prior_model import DAMAGE, KINDS, LEVELS, data


@pytest.fixture(scope="module")
def fitted() -> LinkAverage:
    X, y = data(40)
    return LinkAverage(LEVELS, DAMAGE, KINDS, random_state=0, powers=(1.0, 1.5)).fit(X, y)


def test_mean_is_the_members_average_and_spread_adds_their_disagreement(fitted: LinkAverage):
    X, _ = data(30, seed=1)
    mean, std = fitted.predict(X, return_std=True)
    parts = [m.predict(X, return_std=True) for m in fitted.members_]
    means = np.stack([m for m, _ in parts])
    assert [m.power_ for m in fitted.members_] == [1.0, 1.5]
    assert mean == pytest.approx(means.mean(0))
    var = np.stack([s**2 for _, s in parts]).mean(0) + means.var(0)
    assert std**2 == pytest.approx(var)
    assert np.all(std**2 >= np.stack([s**2 for _, s in parts]).mean(0) - 1e-12)


def test_one_power_is_that_prior_model():
    X, y = data(40)
    one = LinkAverage(LEVELS, DAMAGE, KINDS, random_state=0, powers=(1.0,)).fit(X, y)
    ref = PriorModel(LEVELS, DAMAGE, KINDS, random_state=0, power=1.0).fit(X, y)
    Xt, _ = data(10, seed=2)
    for a, b in zip(
        one.predict(Xt, return_std=True), ref.predict(Xt, return_std=True), strict=True
    ):
        assert a == pytest.approx(b)


def test_save_load_predicts_the_same(fitted: LinkAverage, tmp_path):
    fitted.save(tmp_path / "p.pt", {"space_fingerprint": "abc"})
    back, meta = LinkAverage.load(tmp_path / "p.pt")
    assert meta == {"space_fingerprint": "abc"} and back.powers == (1.0, 1.5)
    X = torch.as_tensor(data(10, seed=3)[0])
    for a, b in zip(back.mean_std_torch(X), fitted.mean_std_torch(X), strict=True):
        assert torch.equal(a, b)


def test_refuses_repeated_powers_and_other_files(tmp_path):
    X, y = data(20)
    with pytest.raises(ValueError, match="distinct"):
        LinkAverage(LEVELS, DAMAGE, KINDS, powers=(1.0, 1.0)).fit(X, y)
    PriorModel(LEVELS, DAMAGE, KINDS).fit(X, y).save(tmp_path / "m.pt", {})
    with pytest.raises(ValueError, match="not a seernet link-average predictor; refit"):
        LinkAverage.load(tmp_path / "m.pt")
