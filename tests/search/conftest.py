"""Toy search problems shared by the solver and baseline tests (no CNN anywhere)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from search.levels import Levels


@dataclass
class Toy:
    """A search problem: objective, costs, levels, and (if known) the relaxed optimum."""

    mean_std: Callable
    costs: dict
    levels: Levels
    optimum: Callable | None = None  # budget -> (x*, objective at x*)
    bits: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def on_levels(self, x: np.ndarray) -> bool:
        """Whether every coordinate of ``x`` is exactly one of its levels."""
        return all(np.any(v == xd) for xd, v in zip(x, self.levels.values, strict=True))

    def corner_costs(self, corner: np.ndarray) -> dict[str, float]:
        """Every cost of one policy, as floats."""
        x = torch.tensor(corner, dtype=torch.float64)[None]
        return {k: float(fn(x)[0]) for k, fn in self.costs.items()}

    def check(self, r, budgets: dict[str, float]) -> None:
        """Assert a result is feasible, exactly, and on valid levels."""
        assert r.feasible
        assert self.on_levels(r.x)
        costs = self.corner_costs(r.x)
        assert all(costs[k] <= b for k, b in budgets.items())  # recomputed, no tolerance
        assert np.isfinite(r.mean) and np.isfinite(r.std)


@pytest.fixture(scope="module")
def quadratic() -> Toy:
    """Separable concave quadratic, one linear cost, fine levels: KKT optimum known."""
    rng = np.random.default_rng(0)
    d = 12
    a, b, w = (torch.tensor(rng.uniform(0.5, 2.0, d)) for _ in range(3))

    def mean_std(x):
        x = x.double()
        mean = (a * x - 0.5 * b * x * x).sum(1)
        return mean, torch.zeros_like(mean)

    def optimum(budget):
        lo, hi = 0.0, 100.0
        for _ in range(200):  # bisection on the multiplier of the budget
            lam = 0.5 * (lo + hi)
            x = ((a - lam * w) / b).clamp(0, 1)
            lo, hi = (lam, hi) if 1 + (w * x).sum() > budget else (lo, lam)
        return x.numpy(), float(mean_std(x[None])[0])

    costs = {"flops": lambda x: 1.0 + (x * w).sum(1)}
    return Toy(mean_std, costs, Levels([np.linspace(0, 1, 101)] * d), optimum)


@pytest.fixture(scope="module")
def mlp() -> Toy:
    """3 'layers': keep ratios, weight and activation bits; a random 3-member MLP
    ensemble objective; a linear FLOPs-like and a bilinear BitOPs-like cost."""
    n = 3
    g = torch.Generator().manual_seed(0)
    members = [
        (torch.randn(3 * n, 16, generator=g), torch.randn(16, 1, generator=g) / 4) for _ in range(3)
    ]
    macs = torch.tensor([4.0, 2.0, 3.0], dtype=torch.float64)

    def mean_std(x):
        ys = torch.stack([(torch.tanh(x @ w1) @ w2)[:, 0] for w1, w2 in members])
        ys = ys + x.sum(1)  # bigger tends to be better, as for accuracy
        return ys.mean(0), ys.std(0)

    def flops(x):
        return (macs * x[:, :n]).sum(1)

    def bitops(x):
        keep = x[:, :n]
        keep_in = torch.cat([torch.ones_like(keep[:, :1]), keep[:, :-1]], 1)
        bits = (2 + 6 * x[:, n : 2 * n]) * (2 + 6 * x[:, 2 * n :])
        return (macs * keep_in * keep * bits).sum(1)

    levels = Levels([[0.25, 0.5, 0.75, 1.0]] * n + [[0.0, 1 / 3, 2 / 3, 1.0]] * (2 * n))
    bits = np.arange(3 * n) >= n
    return Toy(mean_std, {"flops": flops, "bitops": bitops}, levels, None, bits)
