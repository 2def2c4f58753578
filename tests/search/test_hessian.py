"""Hutchinson per-block traces against exact Hessians of tiny models."""

from __future__ import annotations

import pytest
import torch

from search.hessian import hutchinson_traces


def test_diagonal_quadratic_is_exact_with_one_probe():
    """For a diagonal Hessian v_i^2 = 1 makes every single probe exact."""
    d1, d2 = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, -4.0])
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)

    def loss():
        return 0.5 * (d1 * a**2).sum() + 0.5 * (d2 * b**2).sum()

    est = hutchinson_traces([loss], [a, b], probes=1)
    torch.testing.assert_close(est.mean, torch.tensor([6.0, -3.5], dtype=torch.float64))


def test_coupled_quadratic_blocks_converge_to_exact_traces():
    """Off-diagonal blocks couple the two parameters; their traces still come out right."""
    g = torch.Generator().manual_seed(0)
    m = torch.randn(7, 7, generator=g, dtype=torch.float64)
    hess = m @ m.T + torch.eye(7, dtype=torch.float64)
    a, b = (
        torch.randn(4, dtype=torch.float64, requires_grad=True),
        torch.randn(3, dtype=torch.float64, requires_grad=True),
    )

    def loss():
        theta = torch.cat([a, b])
        return 0.5 * theta @ hess @ theta

    est = hutchinson_traces([loss], [a, b], probes=4000, seed=1)
    exact = torch.stack([hess[:4, :4].trace(), hess[4:, 4:].trace()])
    assert est.samples == 4000
    assert ((est.mean - exact).abs() <= 4 * est.stderr).all()
    torch.testing.assert_close(est.mean, exact, rtol=0.05, atol=0.0)


def test_linear_model_cross_entropy_over_batches_matches_autograd_hessian():
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 3).double()
    batches = [
        (torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))) for _ in range(2)
    ]

    def closure(x, y):
        return lambda: torch.nn.functional.cross_entropy(lin(x), y)

    est = hutchinson_traces(
        [closure(x, y) for x, y in batches], [lin.weight, lin.bias], probes=1500, seed=2
    )

    def exact_block(p: torch.nn.Parameter) -> float:
        total = 0.0
        for x, y in batches:

            def f(w, p=p, x=x, y=y):
                weight = w if p is lin.weight else lin.weight
                bias = w if p is lin.bias else lin.bias
                return torch.nn.functional.cross_entropy(x @ weight.T + bias, y)

            h = torch.autograd.functional.hessian(f, p.detach().clone())
            total += h.reshape(p.numel(), p.numel()).trace().item()
        return total / len(batches)

    exact = torch.tensor([exact_block(lin.weight), exact_block(lin.bias)], dtype=torch.float64)
    assert est.samples == 3000
    assert ((est.mean - exact).abs() <= 4 * est.stderr + 1e-12).all()
    torch.testing.assert_close(est.mean, exact, rtol=0.1, atol=0.0)


def test_same_seed_same_estimate_and_bad_inputs():
    w = torch.ones(3, requires_grad=True)
    loss = lambda: (w**3).sum()  # noqa: E731 - Hessian diag 6w, traced at w = 1
    a = hutchinson_traces([loss], [w], probes=3, seed=5)
    b = hutchinson_traces([loss], [w], probes=3, seed=5)
    torch.testing.assert_close(a.mean, b.mean)
    assert a.mean.item() == pytest.approx(18.0)
    with pytest.raises(ValueError, match="probe"):
        hutchinson_traces([loss], [w], probes=0)
    with pytest.raises(ValueError, match="no loss"):
        hutchinson_traces([], [w], probes=1)
