"""Synthetic policy -> accuracy data for the predictor tests (no real measurements needed)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

N_FEATURES = 30


def _smooth_target(X: np.ndarray) -> np.ndarray:
    """A smooth function of 30 inputs, increasing in each on [0, 1]^30 like accuracy in a
    policy: a decaying linear trend, a saturating term and a few interactions."""
    w = np.linspace(1.0, 0.1, X.shape[1])
    return (
        X @ w / 3
        + np.sin(1.5 * X[:, 0])
        + X[:, 1] * X[:, 2]
        + 0.5 * np.tanh(2 * X[:, 3] + X[:, 4] - 1.5)
    )


def _make_data(
    n: int, seed: int, low: float = 0.0, high: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform inputs in [low, high]^30 and the smooth target plus Gaussian noise (sd 0.05)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(low, high, size=(n, N_FEATURES))
    return X, _smooth_target(X) + 0.05 * rng.normal(size=n)


@pytest.fixture(scope="session")
def make_data() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """Factory for seeded synthetic (X, y) samples."""
    return _make_data


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread: the test machine is shared, and results stay bit-reproducible."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
