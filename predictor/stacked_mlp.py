"""M independent MLPs stored as stacked weights, evaluated with one batched matmul per layer.

Monotone mode (``signs`` given) follows constrained monotonic networks (Runje and
Shankaranarayana, ICML 2023): every weight after the first layer, and the first-layer
weights of each constrained input, are used through ``abs`` (times the input's sign),
so every path from a constrained input to the output has the sign of that input. The
activation is monotone, and the hidden units of each layer are split in three: ``a(h)``
(convex for ReLU), its point reflection ``-a(-h)`` (concave) and ``hardtanh`` (bounded).
With only convex units a non-negative network could only represent convex functions;
the mix lets it represent any monotone one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "silu": nn.functional.silu,
    "elu": nn.functional.elu,
    "tanh": torch.tanh,
}
# silu dips below zero before rising: it is not monotone, so it cannot build a monotone net.
MONOTONE_ACTIVATIONS = ("relu", "elu", "tanh")


class StackedMLP(nn.Module):
    """An ensemble of equally shaped MLPs; member ``m`` uses slice ``m`` of every weight.

    Stacking the members lets one ``baddbmm`` per layer run all of them, which is
    what makes fitting five members about as fast as fitting one on a CPU.
    ``signs`` (length ``in_dim``, entries -1, 0 or +1) makes every member monotone:
    non-decreasing in inputs with +1, non-increasing with -1, unconstrained with 0.
    """

    def __init__(
        self,
        n_members: int,
        in_dim: int,
        hidden: Sequence[int],
        activation: str = "relu",
        generator: torch.Generator | None = None,
        signs: torch.Tensor | None = None,
        linear_skip: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}"
            )
        if signs is not None and activation not in MONOTONE_ACTIVATIONS:
            raise ValueError(
                f"a monotone predictor needs a monotone activation {MONOTONE_ACTIVATIONS}, got {activation!r}"
            )
        self.act = ACTIVATIONS[activation]
        self.monotone = signs is not None
        # A buffer, so that it travels with state_dict (saved and loaded with the weights).
        self.register_buffer(
            "signs",
            torch.zeros(in_dim) if signs is None else torch.as_tensor(signs, dtype=torch.float32),
        )
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
        # An optional linear path from the inputs straight to the output. Not zero at the
        # start: abs() has no gradient at 0, so a monotone skip would never leave it.
        self.skip = None
        if linear_skip:
            w = torch.rand(n_members, in_dim, 1, generator=generator) * 2 - 1
            self.skip = nn.Parameter(w / math.sqrt(in_dim))

    @property
    def n_members(self) -> int:
        return self.weights[0].shape[0]

    def effective_weights(self) -> list[torch.Tensor]:
        """The weights the forward pass multiplies by (sign-constrained in monotone mode)."""
        if not self.monotone:
            return list(self.weights)
        first = self.weights[0]
        w0 = self._signed(first)
        return [w0, *(w.abs() for w in list(self.weights)[1:])]

    def _signed(self, w: torch.Tensor) -> torch.Tensor:
        """Input-side weights (M, D, k) with each constrained input's weights given its sign."""
        s = self.signs.to(w).view(1, -1, 1)
        return torch.where(s != 0, s * w.abs(), w)

    def input_weights(self) -> torch.Tensor:
        """(M, D, k) raw weights leaving each input: first layer, and the skip if any."""
        w = self.weights[0]
        return w if self.skip is None else torch.cat([w, self.skip], dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, D) shared or (M, N, D) per-member inputs to (M, N) outputs, in x's dtype."""
        h = x.expand(self.n_members, -1, -1) if x.dim() == 2 else x
        weights = self.effective_weights()
        last = len(weights) - 1
        for i, (w, b) in enumerate(zip(weights, self.biases, strict=True)):
            # .to(x) is a no-op in training; it lets a float64 caller (gradient checks) or a
            # caller on another device use the model without converting it.
            h = torch.baddbmm(b.to(x), h, w.to(x))
            if i < last:
                h = self._mixed_act(h) if self.monotone else self.act(h)
        if self.skip is not None:
            x3 = x.expand(self.n_members, -1, -1) if x.dim() == 2 else x
            skip = self._signed(self.skip) if self.monotone else self.skip
            h = h + torch.bmm(x3, skip.to(x))
        return h.squeeze(-1)

    def _mixed_act(self, h: torch.Tensor) -> torch.Tensor:
        """First third a(h), second third -a(-h), the rest hardtanh: all monotone increasing."""
        k = h.shape[-1]
        k1, k2 = -(-k // 3), -(-2 * k // 3)
        return torch.cat(
            [self.act(h[..., :k1]), -self.act(-h[..., k1:k2]), nn.functional.hardtanh(h[..., k2:])],
            dim=-1,
        )
