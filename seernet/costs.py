"""Analytic, differentiable cost model of a policy: FLOPs (MACs), BitOPs, parameters, size.

Assumptions, stated once:
- One multiply-accumulate counts as one FLOP (the compression literature's convention);
  only Conv2d and Linear layers are counted, like ``seernet.profile``.
- BitOPs of a layer = its MACs x weight bits x input-activation bits.
- Parameters are all learnable tensors (conv/linear weights and biases, BatchNorm affine).
- Size in bytes: conv/linear weights at their bit-width, plus fp32 (4 bytes) for biases,
  BatchNorm parameters, other parameters and one weight scale per output channel.

Every function takes encoded policies ``x`` of shape (N, D) (see ``seernet.space``) and
is evaluated on the relaxed box, where kept channels ``n = n_min + x (C - n_min)`` are
continuous; at valid choices the values are exact integers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from seernet.space import Policy, PolicySpace

COST_NAMES = ("flops", "bitops", "params", "size")
_F = torch.float64


def _coupling(space: PolicySpace, side: str) -> torch.Tensor:
    """(layers, groups) matrix: channels a layer loses per channel a group loses."""
    m = torch.zeros(len(space.layers), space.n_groups, dtype=_F)
    for i, ly in enumerate(space.layers):
        for g, coef in getattr(ly, f"{side}_terms"):
            m[i, g] += coef
    return m


class CostModel:
    """Costs of a policy space, total and per layer, as torch functions of ``x``."""

    def __init__(self, space: PolicySpace) -> None:
        self.space = space
        ly = space.layers
        vec = lambda f: torch.tensor([f(layer) for layer in ly], dtype=_F)  # noqa: E731
        self.full_in, self.full_out = vec(lambda a: a.c_in), vec(lambda a: a.c_out)
        self.a_in, self.a_out = _coupling(space, "in"), _coupling(space, "out")
        self.group_full = torch.tensor([g.channels for g in space.groups], dtype=_F)
        self.group_min = torch.tensor([g.keep[0] for g in space.groups], dtype=_F)
        kinds = [a.kind for a in ly]
        self.is_conv_lin = torch.tensor([k in ("conv", "linear") for k in kinds])
        self.is_bn = torch.tensor([k == "bn" and a.bias for k, a in zip(kinds, ly, strict=True)])
        self.depthwise = torch.tensor([a.depthwise for a in ly])
        self.kernel = vec(lambda a: a.kernel / (a.conv_groups if a.kind == "conv" else 1))
        self.spatial = vec(lambda a: a.spatial)
        self.has_bias = vec(lambda a: float(a.bias and a.kind in ("conv", "linear")))
        self.other = float(sum(a.other_params for a in ly))
        self._bit_index = self._bit_layout()

    # --- relaxed raw values ------------------------------------------------------------
    def kept_channels(self, x: torch.Tensor) -> torch.Tensor:
        """(N, groups) kept channels, continuous on the relaxed box."""
        x = x.to(_F)
        return self.group_min + x[:, : self.space.n_groups] * (self.group_full - self.group_min)

    def layer_channels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, layers) input and output channels of every layer."""
        removed = self.group_full - self.kept_channels(x)
        return self.full_in - removed @ self.a_in.T, self.full_out - removed @ self.a_out.T

    def _bit_layout(self) -> torch.Tensor:
        """Index into [fixed, x...] for every layer's (w, a) bits; 0 = fixed_bits."""
        idx = torch.zeros(len(self.space.layers), 2, dtype=torch.long)
        free = {ly.name: j for j, ly in enumerate(self.space.free_layers)}
        k, nf = self.space.n_groups, len(self.space.free_layers)
        for i, ly in enumerate(self.space.layers):
            if ly.name in free:
                idx[i] = torch.tensor([1 + k + free[ly.name], 1 + k + nf + free[ly.name]])
        return idx

    def layer_bits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, layers) weight and activation bits (continuous on the relaxed box)."""
        c = self.space.choices
        lo, hi = c.bits[0], c.bits[-1]
        raw = lo + x.to(_F) * (hi - lo)
        fixed = torch.full((x.shape[0], 1), float(c.fixed_bits), dtype=_F)
        table = torch.cat([fixed, raw], dim=1)
        return table[:, self._bit_index[:, 0]], table[:, self._bit_index[:, 1]]

    # --- per-layer and total costs -----------------------------------------------------
    def layer_macs(self, x: torch.Tensor) -> torch.Tensor:
        c_in, c_out = self.layer_channels(x)
        per_position = torch.where(self.depthwise, c_out, c_out * c_in) * self.kernel
        return torch.where(self.is_conv_lin, per_position * self.spatial, torch.zeros_like(c_out))

    def layer_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(N, layers) conv/linear weight elements (no biases)."""
        c_in, c_out = self.layer_channels(x)
        w = torch.where(self.depthwise, c_out, c_out * c_in) * self.kernel
        return torch.where(self.is_conv_lin, w, torch.zeros_like(w))

    def layer_fp32_params(self, x: torch.Tensor) -> torch.Tensor:
        """(N, layers) parameters kept in fp32: biases and BatchNorm affine."""
        _, c_out = self.layer_channels(x)
        return c_out * self.has_bias + torch.where(self.is_bn, 2 * c_out, torch.zeros_like(c_out))

    def flops(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_macs(x).sum(1)

    def bitops(self, x: torch.Tensor) -> torch.Tensor:
        wb, ab = self.layer_bits(x)
        return (self.layer_macs(x) * wb * ab).sum(1)

    def params(self, x: torch.Tensor) -> torch.Tensor:
        return (self.layer_weights(x) + self.layer_fp32_params(x)).sum(1) + self.other

    def size(self, x: torch.Tensor) -> torch.Tensor:
        wb, _ = self.layer_bits(x)
        _, c_out = self.layer_channels(x)
        scales = torch.where(self.is_conv_lin, c_out, torch.zeros_like(c_out))
        fp32 = self.layer_fp32_params(x) + scales
        return (self.layer_weights(x) * wb / 8.0 + 4.0 * fp32).sum(1) + 4.0 * self.other

    def functions(self) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """Cost name -> differentiable function of (N, D) encoded policies."""
        return {"flops": self.flops, "bitops": self.bitops, "params": self.params, "size": self.size}

    # --- convenience on raw policies ---------------------------------------------------
    def of_policy(self, policy: Policy) -> dict[str, float]:
        """Exact costs of a valid policy."""
        x = torch.as_tensor(self.space.encode(policy))[None]
        return {k: float(np.round(f(x).item(), 6)) for k, f in self.functions().items()}

    def unpruned(self) -> dict[str, float]:
        """Costs of the unpruned model at the highest bit-width choice."""
        return self.of_policy(self.space.full_policy())

    def per_layer(self, policy: Policy) -> list[dict[str, float | str]]:
        """Per conv/linear layer: channels, bits, MACs, BitOPs (for tables and reports)."""
        x = torch.as_tensor(self.space.encode(policy))[None]
        c_in, c_out = self.layer_channels(x)
        wb, ab = self.layer_bits(x)
        macs = self.layer_macs(x)
        rows = []
        for i, ly in enumerate(self.space.layers):
            if ly.kind in ("conv", "linear"):
                m = float(macs[0, i])
                rows.append({"layer": ly.name, "in": round(float(c_in[0, i])), "out": round(float(c_out[0, i])),
                             "w_bits": round(float(wb[0, i])), "a_bits": round(float(ab[0, i])),
                             "flops": m, "bitops": m * float(wb[0, i] * ab[0, i])})  # fmt: skip
        return rows
