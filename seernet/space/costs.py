"""Analytic, differentiable cost model of a policy: FLOPs (MACs), BitOPs, parameters, size.

Assumptions, stated once:
- One multiply-accumulate counts as one FLOP (the compression literature's convention);
  only Conv2d, ConvTranspose2d and Linear layers are counted (every call of a module called
  twice), like ``seernet.space.mac_counter``.
- BitOPs of a layer = its MACs x weight bits x input-activation bits.
- Parameters are all learnable tensors (conv/linear weights and biases, BatchNorm affine,
  per-channel parameters of other layers: LayerNorm/GroupNorm affine, layer scales).
- Size in bytes: conv/linear weights at their bit-width, plus fp32 (4 bytes) for biases,
  BatchNorm parameters, other parameters and one weight scale per output channel.
- A conv/linear layer the space leaves in float (``Layer.quantized`` False) counts 32 bits
  for its weights and inputs, and has no weight scales.

Every function takes encoded policies ``x`` of shape (N, D) and is evaluated on the
relaxed box: the space's codec (``PolicySpace.relaxed_channels``/``relaxed_bits``) turns
``x`` into continuous kept channels and bit-widths; at valid choices they are exact integers.

Latency (ms) is a cost only when a measured table is given (``seernet.latency.table``):
each layer's entry is interpolated bilinearly in its (input, output) channel counts and
the table's whole-model constant is added. It is exact at the table's grid points,
continuous and non-decreasing in channels between them. In torch it is the latency of the
pruned *float* model (bit-widths do not enter). In ONNX Runtime it is the QDQ model's, with
two more terms: an input below 8 bits adds its requantization, and a group whose count is
off ORT's 8/16-channel blocks a reorder. So there latency *falls* as an input's bits rise
from 7 to 8, and can fall as a count rises to a multiple of 16: the one cost that is not
non-decreasing in every coordinate (the solver grows from a floor that fits and checks
every answer's budgets exactly; ``seernet.steps.solve.cheap_corners``). It is not in
``COST_NAMES``, the sample store's schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from seernet.space.policy import Policy, PolicySpace

if TYPE_CHECKING:
    from seernet.latency.table import LatencyTable

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

    def __init__(self, space: PolicySpace, latency: LatencyTable | None = None) -> None:
        self.space = space
        self.latency_table = latency
        ly = space.layers
        vec = lambda f: torch.tensor([f(layer) for layer in ly], dtype=_F)  # noqa: E731
        self.full_in, self.full_out = vec(lambda a: a.c_in), vec(lambda a: a.c_out)
        self.a_in, self.a_out = _coupling(space, "in"), _coupling(space, "out")
        self.group_full = torch.tensor([g.channels for g in space.groups], dtype=_F)
        kinds = [a.kind for a in ly]
        self.is_conv_lin = torch.tensor([k in ("conv", "linear") for k in kinds])
        # fp32 parameters per output channel besides biases: BatchNorm affine, channelwise layers.
        self.channel_params = vec(lambda a: 2.0 * (a.kind == "bn" and a.bias) + a.channel_params)
        self.is_scaled = torch.tensor(
            [k in ("conv", "linear") and a.quantized for k, a in zip(kinds, ly, strict=True)]
        )
        self.depthwise = torch.tensor([a.depthwise for a in ly])
        self.kernel = vec(lambda a: a.kernel / (a.conv_groups if a.kind == "conv" else 1))
        self.spatial = vec(lambda a: a.spatial)
        self.has_bias = vec(lambda a: float(a.bias and a.kind in ("conv", "linear")))
        self.other = float(sum(a.other_params for a in ly))
        self._bit_index = self._quant_positions()
        if latency is not None:
            self._latency_grids(latency)

    # --- relaxed raw values (decoded by the space's codec) ------------------------------
    def kept_channels(self, x: torch.Tensor) -> torch.Tensor:
        """(N, groups) kept channels, continuous on the relaxed box."""
        return self.space.relaxed_channels(x)

    def layer_channels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, layers) input and output channels of every layer."""
        removed = self.group_full - self.kept_channels(x)
        return self.full_in - removed @ self.a_in.T, self.full_out - removed @ self.a_out.T

    def _quant_positions(self) -> torch.Tensor:
        """Per layer, 1 + its index among the quantized layers; 0 (fixed bits) for the rest, and
        one past the quantized layers (32 bits) for conv/linear layers left in float."""
        pos = {ly.name: i for i, ly in enumerate(self.space.quant_layers)}
        n = len(pos)

        def index(ly) -> int:
            if ly.name in pos:
                return 1 + pos[ly.name]
            return 1 + n if ly.kind in ("conv", "linear") else 0

        return torch.tensor([index(ly) for ly in self.space.layers], dtype=torch.long)

    def layer_bits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, layers) weight and activation bits (continuous on the relaxed box).

        Layers that are not quantized (BatchNorm, ...) read ``fixed_bits``; no cost uses them.
        Conv/linear layers left in float read 32.
        """
        wq, aq = self.space.relaxed_bits(x)
        fixed = torch.full((wq.shape[0], 1), float(self.space.choices.fixed_bits), dtype=_F)
        full = torch.full((wq.shape[0], 1), 32.0, dtype=_F)
        w, a = torch.cat([fixed, wq, full], dim=1), torch.cat([fixed, aq, full], dim=1)
        return w[:, self._bit_index], a[:, self._bit_index]

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
        """(N, layers) parameters kept in fp32: biases, BatchNorm affine, channelwise parameters."""
        _, c_out = self.layer_channels(x)
        return c_out * (self.has_bias + self.channel_params)

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
        scales = torch.where(self.is_scaled, c_out, torch.zeros_like(c_out))
        fp32 = self.layer_fp32_params(x) + scales
        return (self.layer_weights(x) * wb / 8.0 + 4.0 * fp32).sum(1) + 4.0 * self.other

    # --- latency from a measured table -------------------------------------------------
    def _latency_grids(self, table: LatencyTable) -> None:
        """Pad every layer's grid to one (M, G) tensor (edge values repeated, so still sorted)."""
        names = [ly.name for ly in self.space.layers]
        entries = [(names.index(ly.name), table.layers[ly.name]) for ly in self.space.quant_layers]
        gi = max(2, *(len(e.c_in) for _, e in entries))
        go = max(2, *(len(e.c_out) for _, e in entries))
        pad = lambda v, n: list(v) + [v[-1]] * (n - len(v))  # noqa: E731
        self._lat_idx = torch.tensor([i for i, _ in entries])
        self._lat_in = torch.tensor([pad(e.c_in, gi) for _, e in entries], dtype=_F)
        self._lat_out = torch.tensor([pad(e.c_out, go) for _, e in entries], dtype=_F)
        self._lat_n = torch.tensor([[len(e.c_in), len(e.c_out)] for _, e in entries])
        ms = [pad([pad(row, go) for row in e.ms], gi) for _, e in entries]
        self._lat_ms = torch.tensor(ms, dtype=_F).reshape(len(entries), gi * go)
        self._lat_overhead = float(table.overhead_ms)
        self._lat_scale = float(table.scale)
        pixels = table.input_pixels
        self._lat_pixels = torch.tensor([float(pixels.get(n, 0)) for n in names], dtype=_F)
        self._lat_fed = (
            self._lat_pixels @ self.a_in
        )  # per group: input pixels of the layers it feeds
        self._lat_low = (float(table.lowbit_ms), float(table.lowbit_ms_per_element))
        per_element = table.align_ms_per_element
        self._lat_align = {
            int(m): (float(table.align_ms.get(m, 0.0)), float(per_element.get(m, 0.0)))
            for m in {*table.align_ms, *per_element}
            if table.align_ms.get(m) or per_element.get(m)
        }
        keep = [list(g.keep) for g in self.space.groups]
        k = max(2, *(len(v) for v in keep))
        self._keep = torch.tensor([pad(v, k) for v in keep], dtype=_F)
        self._keep_n = torch.tensor([len(v) for v in keep])
        self._keep_off: dict[int, torch.Tensor] = {}  # per multiple: 1 where a level is off it

    @staticmethod
    def _segment(
        grid: torch.Tensor, n: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell index (N, M) left of ``c`` on each layer's grid and the position ``t`` in [0, 1] within it."""
        c = torch.clamp(c, min=grid[:, 0], max=grid.gather(1, (n - 1)[:, None])[:, 0])
        idx = torch.searchsorted(grid, c.detach().T.contiguous(), right=True).T - 1
        idx = torch.minimum(
            idx.clamp(min=0), (n - 2).clamp(min=0)
        )  # the last point ends the last cell
        g0, g1 = grid.gather(1, idx.T).T, grid.gather(1, idx.T + 1).T
        width = g1 - g0
        t = torch.where(width > 0, (c - g0) / torch.where(width > 0, width, 1.0), 0.0)
        return idx, t

    def layer_latency(self, x: torch.Tensor) -> torch.Tensor:
        """(N, conv/linear layers) interpolated latency in ms of every profiled layer."""
        if self.latency_table is None:
            raise ValueError("this cost model has no latency table")
        c_in, c_out = self.layer_channels(x)
        i, ti = self._segment(self._lat_in, self._lat_n[:, 0], c_in[:, self._lat_idx])
        j, tj = self._segment(self._lat_out, self._lat_n[:, 1], c_out[:, self._lat_idx])
        go = self._lat_out.shape[1]
        at = lambda a, b: self._lat_ms.gather(1, (a * go + b).T).T  # noqa: E731
        return ((1 - ti) * (1 - tj) * at(i, j) + ti * (1 - tj) * at(i + 1, j)
                + (1 - ti) * tj * at(i, j + 1) + ti * tj * at(i + 1, j + 1))  # fmt: skip

    def low_bit_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) inputs below 8 bits and (N,) their elements per sample (channels x pixels), each
        input weighted by how far below 8 it is, up to 1 (so 7..8 bits is a linear ramp on the
        relaxed box, and every b < 8 counts fully at valid choices)."""
        if self.latency_table is None:
            raise ValueError("this cost model has no latency table")
        _, a_bits = self.layer_bits(x)
        low = (8.0 - a_bits).clamp(0.0, 1.0) * (self._lat_pixels > 0)
        c_in, _ = self.layer_channels(x)
        return low.sum(1), (low * c_in * self._lat_pixels).sum(1)

    def _keep_position(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each group's kept count located on its keep levels (``_segment``), (N, groups) each."""
        return self._segment(self._keep, self._keep_n, self.space.relaxed_channels(x))

    def _off_blocks(
        self, x: torch.Tensor, multiple: int, position: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """(N, groups) 1 where a group's kept count is not a multiple of ``multiple``; on the
        relaxed box interpolated linearly between its neighbouring keep levels."""
        if multiple not in self._keep_off:
            self._keep_off[multiple] = (torch.remainder(self._keep, multiple) != 0).to(_F)
        off = self._keep_off[multiple]
        idx, t = position if position is not None else self._keep_position(x)
        lo, hi = off.gather(1, idx.T).T, off.gather(1, (idx + 1).T).T
        return (1 - t) * lo + t * hi

    def misaligned_groups(
        self,
        x: torch.Tensor,
        multiple: int,
        position: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(N,) groups whose kept count is not a multiple of ``multiple`` (``_off_blocks``).
        ``position``: ``_keep_position(x)``, when the caller already has it."""
        return self._off_blocks(x, multiple, position).sum(1)

    def misaligned_elements(
        self,
        x: torch.Tensor,
        multiple: int,
        position: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(N,) the input elements per sample (kept channels x pixels, over every layer a group
        feeds) of the groups ``misaligned_groups`` counts: what reordering their tensors moves."""
        off = self._off_blocks(x, multiple, position)
        return (off * self.kept_channels(x) * self._lat_fed).sum(1)

    def latency(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted ms (the table's runtime: torch float or ORT QDQ): scaled layer sum + a
        constant, + in ORT what the inputs below 8 bits add (``seernet.latency.table``)."""
        out = self._lat_scale * self.layer_latency(x).sum(1) + self._lat_overhead
        per_input, per_element = self._lat_low
        if per_input or per_element:
            n_low, elements = self.low_bit_features(x)
            out = out + per_input * n_low + per_element * elements
        if self._lat_align:  # every multiple reads the same positions: locate the counts once
            position = self._keep_position(x)
            kept_fed = self.kept_channels(x) * self._lat_fed
            for multiple, (per_group, per_moved) in self._lat_align.items():
                off = self._off_blocks(x, multiple, position)  # once for both terms
                out = out + (off * (per_group + per_moved * kept_fed)).sum(1)
        return out

    def functions(self) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """Cost name -> differentiable function of (N, D) encoded policies."""
        fns = {"flops": self.flops, "bitops": self.bitops, "params": self.params, "size": self.size}
        if self.latency_table is not None:
            fns["latency"] = self.latency
        return fns

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
