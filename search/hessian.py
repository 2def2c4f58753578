"""Per-parameter-block Hessian traces by Hutchinson's estimator (as in HAWQ-V2/V3).

For a loss L(theta) with theta split into blocks theta_1..theta_K (one per layer), the
trace of the diagonal block H_kk = d2L/dtheta_k2 is E[v_k^T (H v)_k] for a Rademacher
vector v over *all* blocks: the cross terms v_k^T H_kj v_j (j != k) average to zero. So
one Hessian-vector product (autograd double backward) gives an unbiased sample of every
block's trace at once.

Assumptions: the loss closures are deterministic (call the model in eval mode, so
BatchNorm uses running statistics); each closure is one batch, and the traces reported
are averages over closures and probes. Nothing here knows about models or layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TraceEstimate:
    """Mean trace per block, its standard error, and the number of HVPs behind it."""

    mean: Tensor  # (K,)
    stderr: Tensor  # (K,)
    samples: int


def rademacher_like(p: Tensor, gen: torch.Generator) -> Tensor:
    """Random +-1 entries shaped like ``p`` (drawn on the CPU, so seeds agree across devices)."""
    return (torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(device=p.device, dtype=p.dtype)


def hutchinson_traces(
    losses: Iterable[Callable[[], Tensor]], params: Sequence[Tensor], probes: int, seed: int = 0
) -> TraceEstimate:
    """Hutchinson estimate of tr(H_kk) for every tensor in ``params``, ``probes`` HVPs per loss."""
    if probes < 1:
        raise ValueError(f"need at least one probe per loss, got {probes}")
    params = list(params)
    gen = torch.Generator().manual_seed(seed)
    samples: list[Tensor] = []
    for loss_fn in losses:
        loss = loss_fn()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        for i in range(probes):
            vs = [rademacher_like(p, gen) for p in params]
            hvs = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=i < probes - 1)
            samples.append(
                torch.stack([(v * hv).sum().detach() for v, hv in zip(vs, hvs, strict=True)])
                .double()
                .cpu()
            )
    if not samples:
        raise ValueError("no loss closure given")
    stacked = torch.stack(samples)
    n = stacked.shape[0]
    stderr = stacked.std(0) / n**0.5 if n > 1 else torch.full_like(stacked[0], float("inf"))
    return TraceEstimate(stacked.mean(0), stderr, n)
