"""Per-coordinate damage tables: the damage of changing one policy coordinate alone.

For every coordinate ``d`` of the policy space (a channel group's keep count, a layer's
weight bits, a layer's activation bits) and every one of its levels, the base policy
(unpruned, highest bits) is changed in that coordinate only and run on a few fixed
training batches; the table entry is its damage over the base policy (the KL divergence
of its outputs from the base's, or its loss increase: see below). A pruning variant is
built as the collect protocol builds a policy (prune, BatchNorm re-estimation, quantize,
calibrate; no fine-tuning, fewer BN batches); a bit-width variant changes one layer of
the built base policy, so no other layer moves (and it costs a forward pass, not a
build): a new activation width takes the range that calibration picks for it from the
base's own calibration inputs, which it does not change.

Every level is measured. Interpolating between every other level (the first version) read
3-bit as half the 2-bit damage and the keep levels between measured ones likewise, where
the measured damage is often several times smaller (ResNet-20 / Fashion-MNIST: the first
layer's weights at 3 bits 0.000 against 0.418 interpolated, the stem's 10 of 16 channels
0.051 against 0.217). The predictor then rated uniform 3-bit and global-ranking allocations
4-9 points below their measured accuracy, and the solver's answers kept to measured levels.

Why measured and not second-order: one code path covers weights, activations and
pruning alike, for any loss (HAWQ's Hessian trace x quantization error covers weight
bits only). Why training batches: the validation split is what samples are scored on,
so the prior must not have seen it.

What is measured (``DAMAGE``): for classification, the mean KL divergence of the variant's
class probabilities from the base's on the same images; for a user's own loss, the loss
increase. Why KL where it applies: per image, a loss change has a first-order term (the
loss gradient times the change of the outputs) whose mean over the training data is about
0 but whose spread is not, while the mean change is second order; for small damages that
spread is larger than the damage itself and only many images average it away (four loss
batches moved most entries below 0.01 by half their size against sixteen). The KL
divergence has no first-order term and is never negative, and at a well-fitted model its
mean is about the mean loss increase (the Fisher is about the Hessian).

Assumptions, stated: the damages of different coordinates add up to first order (the
predictor learns how they combine, see ``predictor.prior_model``); an entry below the
base loss (noise) counts as no damage; a coordinate's damage does not fall as it loses
more channels or bits (each entry is raised to the largest at or above its level).
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import islice

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seernet.compression.protocol import Protocol, build_compressed, finetune_
from seernet.compression.prune import Criterion
from seernet.compression.quant import (
    _DEFAULT_FRACTIONS,
    _first_tensor,
    _RangeObserver,
    best_act_range,
    calibrate_,
    quant_layers,
)
from seernet.data.datasets import DataSplits
from seernet.data.loaders import batches
from seernet.data.task import Loss, Task, to_device
from seernet.space.policy import Policy, PolicySpace

# Fixed training batches every damage is averaged over (512 images). Measured as the loss
# increase, most entries were below 0.01 and moved by half their size between 4 and 16
# batches (16 batches, protocol seeds 0 and 5: Spearman 0.79 between the two tables,
# median relative difference 0.69), and the solver, maximizing over those entries, picked
# policies where they were low by chance. Measured as the KL divergence (``DAMAGE``), 4
# batches give tables that agree across protocol seeds to Spearman 0.997 (median relative
# difference 0.11) at a quarter of the cost (ResNet-20 / Fashion-MNIST; docs/results.md).
LOSS_BATCHES = 4
DAMAGE = "kl"  # or "loss": the task loss's increase (what a user's own loss always gets)
BN_BATCHES = 2  # BatchNorm re-estimation of a pruning variant (the protocol uses 8)
# Fine-tuning steps of a pruning variant and its base (the protocol's lr and batches); 0
# measures the damage before fine-tuning. With the protocol's 20 steps the table took 3x as
# long and the fast solve's answers were no better (docs/results.md), so it stays 0.
PRUNE_FINETUNE_STEPS = 0
# Measured levels: every ``STEP``-th from the lowest, the rest interpolated (see the module
# doc for why every level is measured).
PRUNE_LEVEL_STEP = 1
BITS_LEVEL_STEP = 1
CALIB_BATCHES = 2  # fixed batches every variant's quantizers are calibrated on
FORMAT = "seernet.sensitivity"
VERSION = 4  # 2: every level measured (1 interpolated every other one); 3: 16 loss batches;
# 4: KL damage for classification, 4 batches


@dataclass
class DamageTable:
    """Damage per coordinate and level; ``levels[d]`` ascending, ``damage[d]`` alike."""

    fingerprint: str
    levels: list[list[float]]
    damage: list[list[float]]
    base_loss: float
    seconds: float
    images: int

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, obj: dict) -> DamageTable:
        if obj.get("format") != FORMAT or obj.get("version") != VERSION:
            raise ValueError("not a seernet sensitivity table of this version")
        fields = ("fingerprint", "levels", "damage", "base_loss", "seconds", "images")
        return cls(**{k: obj[k] for k in fields})


def _variants(space: PolicySpace) -> list[tuple[int, int, Policy]]:
    """(coordinate, level index, policy) to measure: every other level below the top,
    from the lowest (the rest is interpolated)."""
    top = space.encode(space.full_policy())
    out = []
    for d, values in enumerate(space.levels()):
        step = PRUNE_LEVEL_STEP if d < space.n_groups else BITS_LEVEL_STEP
        for j in range(0, len(values) - 1, step):
            x = top.copy()
            x[d] = values[j]
            out.append((d, j, space.decode(x)))
    return out


def _fill(levels: np.ndarray, raw: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Unmeasured levels: linear in the code between the measured ones (the top is 0)."""
    known = measured.copy()
    known[-1] = True
    return np.interp(levels, levels[known], np.where(known, raw, 0.0)[known])


@torch.no_grad()
def _loss(model: nn.Module, data: list, device: torch.device, loss: Loss) -> float:
    """Mean of the task's loss over the batches, weighted by batch size."""
    total, n = 0.0, 0
    for x, y in data:
        total += float(loss(model(x.to(device)), to_device(y, device))) * len(x)
        n += len(x)
    return total / n


class _Damage:
    """A variant's damage over its base (``bases[which]``) on fixed batches: the mean KL
    divergence of its class probabilities from the base's, or its loss increase
    (``DAMAGE``, see the module doc)."""

    @torch.no_grad()
    def __init__(self, data: list, device: torch.device, task: Task, bases) -> None:
        self.data, self.device, self.loss = data, device, task.criterion
        self.kl = DAMAGE == "kl" and task.is_classification
        if self.kl:
            self.ref = [[self._log_probs(b, x) for x, _ in data] for b in bases]
            self.base_loss = _loss(bases[-1], data, device, self.loss)
        else:
            self.ref = [_loss(b, data, device, self.loss) for b in bases]
            self.base_loss = self.ref[-1]

    def _log_probs(self, model: nn.Module, x: Tensor) -> Tensor:
        return F.log_softmax(model(x.to(self.device)).double(), dim=1)

    @torch.no_grad()
    def __call__(self, model: nn.Module, which: int) -> float:
        if not self.kl:
            return _loss(model, self.data, self.device, self.loss) - self.ref[which]
        total = sum(
            float(F.kl_div(self._log_probs(model, x), ref, reduction="sum", log_target=True))
            for (x, _), ref in zip(self.data, self.ref[which], strict=True)
        )
        return total / sum(len(x) for x, _ in self.data)


class _Builder:
    """Builds the base policy once. A bit-width variant changes one layer of a copy of it,
    so no other layer moves; a pruning variant is built as the protocol builds it and
    compared with the base built the same way."""

    def __init__(self, model, space, splits, protocol, device, criterion) -> None:
        self.args = (model, space, splits, protocol, device, criterion)
        self.calib = list(islice(batches(splits.train, protocol.batch_size, shuffle=True,
                                         seed=protocol.seed + 11), CALIB_BATCHES))  # fmt: skip
        self.built_base = self.pruned(space.full_policy())
        # the bit-width variants' base is never fine-tuned (they are not rebuilt)
        self.base = (
            copy.deepcopy(self.built_base)
            if PRUNE_FINETUNE_STEPS == 0
            else build_compressed(model, space, space.full_policy(), *self.args[2:]).eval()
        )
        calibrate_(self.base, self.calib, seed=protocol.seed, weight_clip=protocol.weight_clip)
        self.inputs = _calibration_inputs(self.base, self.calib, protocol.seed)

    def pruned(self, policy: Policy) -> nn.Module:
        model = build_compressed(*self.args[:2], policy, *self.args[2:])
        _, _, splits, protocol, device, _ = self.args
        finetune_(model, splits, PRUNE_FINETUNE_STEPS, protocol, device)
        return model.eval()

    def bits(self, layer: str, w_bits: int, a_bits: int) -> nn.Module:
        """The base with one layer at (w_bits, a_bits). A new activation width gets the range
        ``calibrate_`` would give it: its inputs (observed with activation quantization off)
        do not depend on this layer's own activation width, so the base's serve, and no
        other layer's range or weight scale changes."""
        model = copy.deepcopy(self.base)
        q = quant_layers(model)[layer]
        new_range = a_bits != q.a_bits
        q.set_bits(w_bits, a_bits)
        if new_range:
            samples, lo, hi = self.inputs[layer]
            q.set_act_range(*best_act_range(samples, lo, hi, a_bits, _DEFAULT_FRACTIONS))
        return model.eval()


@torch.no_grad()
def _calibration_inputs(model: nn.Module, calib: list, seed: int) -> dict:
    """Per quantized-activation layer, what ``calibrate_(model, calib, seed=seed)`` observes:
    (value subsample, min, max) of its inputs, with the same observers and seeds."""
    layers = {n: m for n, m in quant_layers(model).items() if m.a_bits is not None}
    device = next(model.parameters()).device
    for i, m in enumerate(layers.values()):
        m.observer = _RangeObserver(2**16, seed + i)  # calibrate_'s samples_per_batch
    try:
        model.eval()
        for batch in calib:
            model(_first_tensor(batch).to(device))
        return {n: (torch.cat(m.observer.samples), m.observer.lo.item(), m.observer.hi.item())
                for n, m in layers.items()}  # fmt: skip
    finally:
        for m in layers.values():
            m.observer = None


def _monotone_damage(raw: np.ndarray) -> np.ndarray:
    """No negative damage; each level at least as damaging as every level above it."""
    clipped = np.maximum(raw, 0.0)
    return np.maximum.accumulate(clipped[::-1])[::-1]


# chunks of variant indices -> (chunk number, ``variant_damages`` of it) as each finishes
Mapper = Callable[[list[np.ndarray]], Iterator[tuple[int, "VariantDamages"]]]


@dataclass
class VariantDamages:
    """One share's measurements: its damages, and the base they are measured over."""

    damages: list[float]
    base_loss: float  # the calibrated base policy's loss
    images: int  # training images every loss is averaged over


def variant_damages(
    model: nn.Module,
    space: PolicySpace,
    splits: DataSplits,
    protocol: Protocol,
    device: torch.device,
    criterion: Criterion | None,
    indices: Sequence[int],
    progress: bool = False,
) -> VariantDamages:
    """The damages of ``_variants(space)[i]`` for every ``i`` in ``indices``, over
    their base (what one worker measures; the base is built once per call)."""
    proto = Protocol(**{**protocol.to_json(), "bn_batches": BN_BATCHES})
    loader = batches(splits.train, proto.batch_size, shuffle=True, seed=proto.seed + 7)
    data = list(islice(loader, LOSS_BATCHES))
    builder = _Builder(model, space, splits, proto, device, criterion)
    # a pruning variant is built as the protocol builds it, so its base is the base built
    # alike; a bit-width variant changes one layer of the calibrated base
    damage = _Damage(data, device, splits.task, (builder.built_base, builder.base))
    variants = _variants(space)
    out = []
    for n, i in enumerate(indices, 1):
        d, _, policy = variants[i]
        out.append(damage(_variant_model(builder, space, d, policy), int(d >= space.n_groups)))
        if progress and n % 50 == 0:
            print(f"sensitivity: {n}/{len(indices)} coordinate levels", file=sys.stderr)
    return VariantDamages(out, damage.base_loss, sum(len(y) for _, y in data))


def measure_damage(
    model: nn.Module,
    space: PolicySpace,
    splits: DataSplits,
    protocol: Protocol,
    device: torch.device,
    criterion: Criterion | None = None,
    progress: bool = True,
    mapper: Mapper | None = None,
    parts: int = 1,
) -> DamageTable:
    """Measure the table (about one protocol build per coordinate level; see the module doc).

    ``mapper`` runs ``parts`` shares of the variants elsewhere (worker processes, each
    calling ``variant_damages``); without it they are measured here, in one share."""
    start = time.perf_counter()
    variants = _variants(space)
    # Strided shares: pruning variants (a build each) and bit-width ones (a forward pass)
    # spread evenly over the workers.
    chunks = [np.arange(k, len(variants), parts) for k in range(parts)]
    if mapper is None:
        args = (model, space, splits, protocol, device, criterion)
        mapper = lambda cs: ((k, variant_damages(*args, c, progress)) for k, c in enumerate(cs))  # noqa: E731
    levels = [np.asarray(v, dtype=np.float64) for v in space.levels()]
    raw = [np.zeros(len(v)) for v in levels]
    measured = [np.zeros(len(v), dtype=bool) for v in levels]
    done, share = 0, None
    for k, share in mapper(chunks):
        for i, value in zip(chunks[k], share.damages, strict=True):
            d, j, _ = variants[i]
            raw[d][j], measured[d][j] = value, True
        done += len(share.damages)
        if progress and parts > 1:
            print(f"sensitivity: {done}/{len(variants)} coordinate levels", file=sys.stderr)
    damage = [
        _monotone_damage(_fill(lv, r, m)) for lv, r, m in zip(levels, raw, measured, strict=True)
    ]
    return DamageTable(
        fingerprint=space.fingerprint,
        levels=[v.tolist() for v in levels],
        damage=[v.tolist() for v in damage],
        base_loss=share.base_loss,
        seconds=time.perf_counter() - start,
        images=share.images,
    )


def _variant_model(builder: _Builder, space: PolicySpace, d: int, policy: Policy) -> nn.Module:
    """The built model of a one-coordinate variant (coordinate ``d`` of the codec's layout)."""
    if d < space.n_groups:
        return builder.pruned(policy)
    layer = space.free_layers[(d - space.n_groups) % len(space.free_layers)].name
    return builder.bits(layer, *policy.bits[layer])
