"""M independent MLPs stored as stacked weights, evaluated with one batched matmul per layer."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "silu": nn.functional.silu,
    "elu": nn.functional.elu,
}


class StackedMLP(nn.Module):
    """An ensemble of equally shaped MLPs; member ``m`` uses slice ``m`` of every weight.

    Stacking the members lets one ``baddbmm`` per layer run all of them, which is
    what makes fitting five members about as fast as fitting one on a CPU.
    """

    def __init__(
        self,
        n_members: int,
        in_dim: int,
        hidden: Sequence[int],
        activation: str = "relu",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        self.act = ACTIVATIONS[activation]
        dims = [in_dim, *hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(dims[:-1], dims[1:], strict=True):
            # Same uniform(+-1/sqrt(fan_in)) rule as torch.nn.Linear, drawn per member.
            bound = 1.0 / math.sqrt(fan_in)
            w = torch.rand(n_members, fan_in, fan_out, generator=generator) * 2 - 1
            b = torch.rand(n_members, 1, fan_out, generator=generator) * 2 - 1
            self.weights.append(nn.Parameter(w * bound))
            self.biases.append(nn.Parameter(b * bound))

    @property
    def n_members(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, D) shared or (M, N, D) per-member inputs to (M, N) outputs, in x's dtype."""
        h = x.expand(self.n_members, -1, -1) if x.dim() == 2 else x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            # .to(x) is a no-op in training; it lets a float64 caller (gradient checks) or a
            # caller on another device use the model without converting it.
            h = torch.baddbmm(b.to(x), h, w.to(x))
            if i < last:
                h = self.act(h)
        return h.squeeze(-1)
