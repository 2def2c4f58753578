"""The policy space of a model, derived from Torch-Pruning's dependency graph.

A *policy* keeps ``n_g`` channels of every prunable channel group ``g`` (channels that
must go together: residual adds, depthwise convolutions, concatenations) and gives
every conv/linear layer a weight and an input-activation bit-width. The first conv and
the classifier keep ``fixed_bits``; the classifier's outputs are never pruned.

The single codec (``PolicySpace``): a policy <-> a vector ``x`` in [0, 1]^D laid out as
``[group keep, ..., weight bits of free layers, ..., activation bits of free layers]``.
Each coordinate is linear in its raw value (``n = n_min + x (C - n_min)``,
``b = b_min + x (b_max - b_min)``), so every cost is non-decreasing in every coordinate,
and the valid values of a coordinate are exactly the encodings of valid raw choices.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np
import torch

from seernet.errors import UserError


@dataclass(frozen=True)
class SpaceChoices:
    """What a policy may choose; defaults follow the SeerNet setting.

    ``channel_multiple`` N > 1 keeps every pruned count a multiple of N (Torch-Pruning's
    ``round_to``: CPU kernels run whole vectors of 8 or 16 channels); a group's full count
    stays a choice even when it is not one."""

    max_prune: float = 0.75
    prune_step: float = 0.125
    bits: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
    fixed_bits: int = 8
    channel_multiple: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_prune < 1.0:
            raise ValueError(f"max_prune must be in [0, 1), got {self.max_prune}")
        if not 0.0 < self.prune_step <= 1.0:
            raise ValueError(f"prune_step must be in (0, 1], got {self.prune_step}")
        if not self.bits or any(b < 2 or b > 8 for b in self.bits):
            raise ValueError(f"bit-widths must lie in 2..8, got {self.bits}")
        if not 2 <= self.fixed_bits <= 8:
            raise ValueError(f"fixed_bits must lie in 2..8, got {self.fixed_bits}")
        n = self.channel_multiple
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"channel_multiple must be an integer >= 1, got {n!r}")
        # A numpy integer is accepted; the workspace's JSON needs a plain int.
        object.__setattr__(self, "channel_multiple", int(n))
        object.__setattr__(self, "bits", tuple(sorted(set(self.bits))))

    def keep_counts(self, channels: int, multiple: int | None = None) -> tuple[int, ...]:
        """Valid kept-channel counts of a group of ``channels``, ascending; ``multiple``
        (default ``channel_multiple``): the counts are its multiples, or ``channels``."""
        ratios = np.arange(0.0, self.max_prune + 1e-9, self.prune_step)
        counts = {max(1, round((1.0 - r) * channels)) for r in ratios}
        return tuple(sorted(round_up(counts, channels, multiple or self.channel_multiple)))


def round_up(counts: set[int], channels: int, multiple: int) -> set[int]:
    """Each count raised to a multiple of ``multiple`` (as Torch-Pruning's ``round_to`` does:
    never more pruning than the ratio asked for), or to ``channels`` when that is smaller."""
    if multiple == 1:
        return counts
    return {min(channels, -(-n // multiple) * multiple) for n in counts}


def multiple_levels(keep: tuple[int, ...], channels: int, multiple: int) -> tuple[int, ...]:
    """The counts of ``keep`` that are multiples of ``multiple``, and the full count."""
    return tuple(n for n in keep if n % multiple == 0 or n == channels)


@dataclass(frozen=True)
class ChannelGroup:
    """Coupled output channels, named after the module Torch-Pruning roots them at."""

    name: str
    channels: int
    keep: tuple[int, ...]


@dataclass(frozen=True)
class Layer:
    """One parameterised module and how its channel counts depend on the groups.

    ``in_terms``/``out_terms`` list (group index, coefficient): removing one channel of
    that group removes ``coefficient`` input/output channels here (1 except after a
    flatten, where one channel feeds several features).
    """

    name: str
    kind: str  # "conv", "linear", "bn", "channelwise" (params per pruned channel) or "other"
    c_in: int
    c_out: int
    kernel: int = 1  # kh * kw
    spatial: int = 1  # output positions per sample
    depthwise: bool = False
    conv_groups: int = 1  # grouped (not depthwise) convs: groups, kept when pruned
    bias: bool = False
    other_params: int = 0
    channel_params: int = 0  # "channelwise": fp32 parameters per channel (norm affine, scales)
    in_terms: tuple[tuple[int, float], ...] = ()
    out_terms: tuple[tuple[int, float], ...] = ()
    fixed_bits: bool = False
    quantized: bool = True  # conv/linear: False when its forward cannot be fake-quantized


@dataclass
class Policy:
    """Raw choices: kept channels per group, (weight, activation) bits per quantized layer."""

    channels: dict[str, int]
    bits: dict[str, tuple[int, int]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"channels": self.channels, "bits": {k: list(v) for k, v in self.bits.items()}}

    @classmethod
    def from_json(cls, obj: dict) -> Policy:
        try:
            channels = {str(k): int(v) for k, v in obj["channels"].items()}
            bits = {str(k): (int(v[0]), int(v[1])) for k, v in obj["bits"].items()}
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise UserError(f"malformed policy (needs 'channels' and 'bits' maps): {exc}") from exc
        return cls(channels, bits)


class PolicySpace:
    """Groups, layers and choices of one model; encodes and decodes policies."""

    def __init__(
        self,
        groups: list[ChannelGroup],
        layers: list[Layer],
        choices: SpaceChoices,
        input_shape: tuple[int, ...],
        notes: list[str] | None = None,
    ) -> None:
        self.groups, self.layers, self.choices = groups, layers, choices
        self.input_shape = tuple(input_shape)
        # What the space leaves alone (channels kept, a layer in float), a line each.
        self.notes = list(notes or [])
        self.quant_layers = [ly for ly in layers if ly.kind in ("conv", "linear") and ly.quantized]
        self.free_layers = [ly for ly in self.quant_layers if not ly.fixed_bits]

    # --- layout ------------------------------------------------------------------------
    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def dim(self) -> int:
        return self.n_groups + 2 * len(self.free_layers)

    def bit_dims(self) -> np.ndarray:
        """Indices of the bit-width coordinates."""
        return np.arange(self.n_groups, self.dim)

    def dim_names(self) -> list[str]:
        names = [f"keep:{g.name}" for g in self.groups]
        names += [f"wbits:{ly.name}" for ly in self.free_layers]
        return names + [f"abits:{ly.name}" for ly in self.free_layers]

    def levels(self, multiple: int = 1) -> list[np.ndarray]:
        """Valid encoded values of every coordinate, ascending (for ``search.Levels``);
        ``multiple`` > 1: only the kept counts that are its multiples, and each full count."""
        out = [
            self._encode_keep(
                g, np.array(multiple_levels(g.keep, g.channels, multiple), dtype=float)
            )
            for g in self.groups
        ]
        bits = self._encode_bits(np.array(self.choices.bits, dtype=np.float64))
        return out + [bits.copy() for _ in range(2 * len(self.free_layers))]

    # --- codec -------------------------------------------------------------------------
    # Every other module encodes and decodes through the methods below, so the layout
    # and the linear maps exist once (SeerNet's own code wrote them twice and drifted).
    @staticmethod
    def _encode_keep(g: ChannelGroup, n: np.ndarray) -> np.ndarray:
        lo = g.keep[0]
        return np.ones_like(n) if g.channels == lo else (n - lo) / (g.channels - lo)

    def _encode_bits(self, b: np.ndarray) -> np.ndarray:
        lo, hi = self.choices.bits[0], self.choices.bits[-1]
        return np.ones_like(b) if hi == lo else (b - lo) / (hi - lo)

    def encode_keep(self, keep: np.ndarray) -> np.ndarray:
        """(N, groups) kept-channel counts -> their (N, groups) encodings (not validated)."""
        keep = np.atleast_2d(np.asarray(keep, dtype=np.float64))
        full = np.array([g.channels for g in self.groups], dtype=np.float64)
        low = np.array([g.keep[0] for g in self.groups], dtype=np.float64)
        return np.where(full > low, (keep - low) / np.where(full > low, full - low, 1.0), 1.0)

    def encode_bits(self, bits: float) -> float:
        """The encoding of one bit-width (the same on every bit coordinate)."""
        return float(self._encode_bits(np.float64(bits)))

    def encode_uniform(self, keep: np.ndarray, bits: int) -> np.ndarray:
        """(N, groups) kept counts and ``bits`` on every free layer -> (N, D) encoded policies."""
        groups = self.encode_keep(keep)
        rest = np.full((groups.shape[0], self.dim - self.n_groups), self.encode_bits(bits))
        return np.concatenate([groups, rest], axis=1)

    def bits_mask(self, bits: int) -> tuple[np.ndarray, np.ndarray]:
        """Every bit-width coordinate frozen at ``bits``: (fixed mask, values), both (D,).

        Raises ValueError when ``bits`` is not one of the space's choices.
        """
        if bits not in self.choices.bits:
            raise ValueError(
                f"{bits} is not one of this space's bit-widths {list(self.choices.bits)}"
            )
        fixed = np.zeros(self.dim, dtype=bool)
        fixed[self.bit_dims()] = True
        values = np.zeros(self.dim)
        values[self.bit_dims()] = self.encode_bits(bits)
        return fixed, values

    @property
    def n_choices(self) -> int:
        """Length of ``raw_choices``: a count per group, (weight, activation) bits per quantized layer."""
        return self.n_groups + 2 * len(self.quant_layers)

    def raw_choices(self, policy: Policy) -> tuple[int, ...]:
        """Kept channels per group, then weight bits and activation bits per quantized layer."""
        return (
            tuple(policy.channels[g.name] for g in self.groups)
            + tuple(policy.bits[ly.name][0] for ly in self.quant_layers)
            + tuple(policy.bits[ly.name][1] for ly in self.quant_layers)
        )

    def encode(self, policy: Policy) -> np.ndarray:
        """Policy -> vector in [0, 1]^D (raises UserError on invalid choices)."""
        self.validate(policy)
        x = [self._encode_keep(g, np.float64(policy.channels[g.name])) for g in self.groups]
        x += [self._encode_bits(np.float64(policy.bits[ly.name][0])) for ly in self.free_layers]
        x += [self._encode_bits(np.float64(policy.bits[ly.name][1])) for ly in self.free_layers]
        return np.asarray(x, dtype=np.float64)

    # --- differentiable decode of relaxed vectors ----------------------------------------
    @cached_property
    def _relaxed_tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Smallest and full count per group; index of every quantized layer's (w, a) bits in [fixed, x]."""
        low = torch.tensor([g.keep[0] for g in self.groups], dtype=torch.float64)
        full = torch.tensor([g.channels for g in self.groups], dtype=torch.float64)
        idx = torch.zeros(len(self.quant_layers), 2, dtype=torch.long)  # 0 = fixed_bits
        free = {ly.name: j for j, ly in enumerate(self.free_layers)}
        k, nf = self.n_groups, len(self.free_layers)
        for i, ly in enumerate(self.quant_layers):
            if ly.name in free:
                idx[i] = torch.tensor([1 + k + free[ly.name], 1 + k + nf + free[ly.name]])
        return low, full, idx

    def relaxed_channels(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) encoded -> (N, groups) kept channels, continuous between valid counts."""
        low, full, _ = self._relaxed_tables
        return low + x.to(torch.float64)[:, : self.n_groups] * (full - low)

    def relaxed_bits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) encoded -> (N, quantized layers) weight and activation bits (fixed layers at ``fixed_bits``)."""
        _, _, idx = self._relaxed_tables
        lo, hi = self.choices.bits[0], self.choices.bits[-1]
        raw = lo + x.to(torch.float64) * (hi - lo)
        fixed = torch.full((x.shape[0], 1), float(self.choices.fixed_bits), dtype=torch.float64)
        table = torch.cat([fixed, raw], dim=1)
        return table[:, idx[:, 0]], table[:, idx[:, 1]]

    def decode(self, x: np.ndarray) -> Policy:
        """Vector -> policy, rounding every coordinate to its nearest valid choice."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size != self.dim:
            raise UserError(f"policy vector has {x.size} entries, this space has {self.dim}")
        channels = {}
        for i, g in enumerate(self.groups):
            enc = self._encode_keep(g, np.array(g.keep, dtype=np.float64))
            channels[g.name] = int(g.keep[int(np.abs(enc - x[i]).argmin())])
        bits_enc = self._encode_bits(np.array(self.choices.bits, dtype=np.float64))
        nearest = lambda v: int(self.choices.bits[int(np.abs(bits_enc - v).argmin())])  # noqa: E731
        fixed = self.choices.fixed_bits
        bits = {ly.name: (fixed, fixed) for ly in self.quant_layers if ly.fixed_bits}
        k, nf = self.n_groups, len(self.free_layers)
        for j, ly in enumerate(self.free_layers):
            bits[ly.name] = (nearest(x[k + j]), nearest(x[k + nf + j]))
        return Policy(channels, {ly.name: bits[ly.name] for ly in self.quant_layers})

    def validate(self, policy: Policy) -> None:
        """Every group and quantized layer present with a valid choice, or a UserError."""
        for g in self.groups:
            n = policy.channels.get(g.name)
            if n not in g.keep:
                raise UserError(
                    f"group {g.name!r}: {n} kept channels is not a valid choice {list(g.keep)}"
                )
        allowed = set(self.choices.bits)
        for ly in self.quant_layers:
            wb = policy.bits.get(ly.name)
            ok = wb is not None and (
                tuple(wb) == (self.choices.fixed_bits,) * 2 if ly.fixed_bits else set(wb) <= allowed
            )
            if not ok:
                raise UserError(
                    f"layer {ly.name!r}: bits {wb} are not valid here (allowed {sorted(allowed)})"
                )

    def full_policy(self, bits: int | None = None) -> Policy:
        """The unpruned model at ``bits`` (default: the highest choice) on free layers."""
        b = bits or self.choices.bits[-1]
        fixed = self.choices.fixed_bits
        return Policy(
            {g.name: g.channels for g in self.groups},
            {ly.name: (fixed, fixed) if ly.fixed_bits else (b, b) for ly in self.quant_layers},
        )

    def uniform_policy(self, keep: float, bits: int | None = None) -> Policy:
        """Every group keeps its valid count nearest ``keep`` x its channels; free layers at ``bits``."""
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"keep fraction must be in (0, 1], got {keep}")
        channels = {
            g.name: min(g.keep, key=lambda n, g=g: abs(n - keep * g.channels)) for g in self.groups
        }
        return Policy(channels, self.full_policy(bits).bits)

    def nearest_bits(self, bits: int) -> int:
        """The space's bit-width choice nearest ``bits`` (the lower one on a tie)."""
        return min(self.choices.bits, key=lambda b: (abs(b - bits), b))

    # --- identity ----------------------------------------------------------------------
    def describe(self) -> dict:
        """JSON-able description; its hash is the fingerprint."""
        choices = asdict(self.choices)
        if choices["channel_multiple"] == 1:  # fingerprints of spaces made before it stay
            del choices["channel_multiple"]
        out = {
            "choices": choices,
            "input_shape": list(self.input_shape),
            "groups": [[g.name, g.channels, list(g.keep)] for g in self.groups],
            "layers": [[ly.name, ly.kind, ly.c_in, ly.c_out, ly.fixed_bits] for ly in self.layers],
        }
        floats = [
            ly.name for ly in self.layers if ly.kind in ("conv", "linear") and not ly.quantized
        ]
        if floats:  # only then: the fingerprints of fully quantized spaces stay as they were
            out["float_layers"] = floats
        return out

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(self.describe(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def unsupported(msg: str) -> UserError:
    return UserError(f"model not supported by the policy space: {msg}")


__all__ = ["ChannelGroup", "Layer", "Policy", "PolicySpace", "SpaceChoices"]
