"""HAWQ-V3-style mixed precision (Yao et al., ICML 2021) on a seernet model and policy space.

Sensitivity of layer ``l`` at weight bit-width ``b`` (HAWQ's second-order estimate of the
loss increase):  Omega_l(b) = tr(H_l) / n_l * ||Q_b(W_l) - W_l||^2,  where tr(H_l) is the
Hutchinson trace of the loss Hessian w.r.t. the layer's weights (``search.hessian``),
``n_l`` its number of weights, and Q_b seernet's own weight quantizer (``quantize_`` at
``b`` bits, the exact weights seernet simulates). An ILP (``search.bit_allocation``) then
picks one choice per free layer minimising sum Omega under the budget.

Choices made (documented in the bench): the Hessian is taken on the model *as it will
be quantized*, i.e. after the baseline's pruning and BatchNorm re-estimation, in eval
mode, cross-entropy on training batches. Activations: under a BitOPs budget every layer
gets one precision for weights and input activations (a = w, HAWQ-V3's own setting);
under a weight-size budget activations stay at 8 bits (they cost no weight memory,
as in MCT's default). First conv and classifier keep ``fixed_bits`` like every policy.

Two users: the ``hawq`` baseline of ``benchmarks/bench_end_to_end.py``, and ``solve
--refine``, which measures this allocation as an anchor under a BitOPs or size budget, so
the policy it returns is, by measurement, never more than refine's noise margin below a
sensitivity + ILP allocation.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from itertools import islice

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from search.bit_allocation import allocate
from search.hessian import hutchinson_traces
from seernet.compression.protocol import adapt_batchnorm_
from seernet.compression.prune import prune_model
from seernet.compression.quant import quant_layers, quantize_
from seernet.data.loaders import batches
from seernet.data.task import Loss
from seernet.space.costs import CostModel
from seernet.space.policy import Policy, PolicySpace

HESSIAN_BATCHES = 4  # training batches of HESSIAN_BATCH_SIZE images the traces average over
HESSIAN_BATCH_SIZE = 128
PROBES = 64  # Hessian-vector products per batch (256 in all: HAWQ-V3 uses a few hundred)
BN_BATCHES = 8  # BatchNorm re-estimation after pruning, as the collect protocol does


@dataclass
class Sensitivity:
    """Per free layer: Hessian trace (and its standard error), weights, ||Q_b(W) - W||^2 per bit."""

    layers: list[str]
    bits: list[int]
    trace: list[float]
    trace_stderr: list[float]
    n_weights: list[int]
    perturbation: list[list[float]]  # (layers, bits)
    hvps: int

    def omega(self) -> np.ndarray:
        """(layers, bits) HAWQ sensitivity: mean Hessian eigen-mass per weight x perturbation.

        A trace estimate at or below zero (noise, or a layer in a flat or non-convex region)
        is raised to a floor, 1e-6 of the largest per-weight trace: HAWQ's model assumes a
        positive curvature, and the floor keeps "more bits, less sensitivity" for such layers.
        """
        per_weight = np.asarray(self.trace) / np.asarray(self.n_weights)
        floor = 1e-6 * max(float(per_weight.max()), 1e-30)
        return np.maximum(per_weight, floor)[:, None] * np.asarray(self.perturbation)

    def to_json(self) -> dict:
        return asdict(self)


@torch.no_grad()
def perturbations(model: nn.Module, layers: list[str], bits: list[int]) -> list[list[float]]:
    """||Q_b(W) - W||^2 of every layer at every bit-width, with seernet's quantizer."""
    q = quantize_(copy.deepcopy(model).cpu().eval(), {n: (bits[0], None) for n in layers})
    out = np.zeros((len(layers), len(bits)))
    for j, b in enumerate(bits):
        quantize_(q, {n: (b, None) for n in layers})  # re-derives each layer's weight scale
        wrapped = quant_layers(q)
        for i, n in enumerate(layers):
            w = wrapped[n].weight
            out[i, j] = float((wrapped[n].quantized_weight() - w).double().square().sum())
    return out.tolist()


def sensitivities(
    model: nn.Module, layers: list[str], data: Iterable, bits: list[int], probes: int, seed: int = 0,
    loss: Loss = F.cross_entropy,
) -> Sensitivity:  # fmt: skip
    """Hutchinson traces (``probes`` HVPs of ``loss`` per batch of ``data``) and perturbations of ``layers``."""
    model = copy.deepcopy(model).cpu().eval()
    for p in model.parameters():
        p.requires_grad_(True)
    params = [model.get_submodule(n).weight for n in layers]
    closures = [lambda x=x, y=y: loss(model(x), y) for x, y in data]
    est = hutchinson_traces(closures, params, probes, seed)
    return Sensitivity(
        layers=list(layers), bits=list(bits), trace=est.mean.tolist(), trace_stderr=est.stderr.tolist(),
        n_weights=[p.numel() for p in params], perturbation=perturbations(model, layers, bits), hvps=est.samples,
    )  # fmt: skip


def pruned_sensitivity(
    model: nn.Module,
    space: PolicySpace,
    train,
    channels: dict[str, int],
    probes: int = PROBES,
    n_batches: int = HESSIAN_BATCHES,
    loss: Loss = F.cross_entropy,
) -> Sensitivity:
    """Sensitivities of ``model`` pruned to ``channels``, BatchNorm re-estimated on ``train``:
    the model as it will be quantized. Seeded (BN batches seed 0, Hessian batches seed 1)."""
    pruned = prune_model(model, space, Policy(channels, space.full_policy().bits))
    adapt_batchnorm_(
        pruned,
        batches(train, HESSIAN_BATCH_SIZE, shuffle=True, seed=0),
        torch.device("cpu"),
        BN_BATCHES,
    )
    data = list(islice(batches(train, HESSIAN_BATCH_SIZE, shuffle=True, seed=1), n_batches))
    layers = [ly.name for ly in space.free_layers]
    return sensitivities(pruned, layers, data, list(space.choices.bits), probes, loss=loss)


def _layer_costs(
    space: PolicySpace, costs: CostModel, channels: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """MACs and weight elements of every free layer at these channel counts."""
    x = torch.as_tensor(space.encode(Policy(channels, space.full_policy().bits)))[None]
    index = [
        i
        for i, ly in enumerate(space.layers)
        if not ly.fixed_bits and ly.kind in ("conv", "linear")
    ]
    return costs.layer_macs(x)[0, index].numpy(), costs.layer_weights(x)[0, index].numpy()


def choice_bits(bits: int, budget: str, a_bits: int = 8) -> tuple[int, int]:
    """(weight, activation) bits of a choice: a = w under BitOPs, a = ``a_bits`` under size."""
    return (bits, bits) if budget == "bitops" else (bits, a_bits)


def hawq_policy(
    space: PolicySpace,
    costs: CostModel,
    channels: dict[str, int],
    sens: Sensitivity,
    budgets: dict[str, float],
) -> Policy:
    """The ILP's allocation for these channel counts under a ``bitops`` or ``size`` budget."""
    kinds = [k for k in budgets if k in ("bitops", "size")]
    if len(kinds) != 1:
        raise ValueError(
            f"HAWQ allocates bits under one BitOPs or size budget, got {sorted(budgets)}"
        )
    kind = kinds[0]
    free = [ly.name for ly in space.free_layers]
    if sens.layers != free:
        raise ValueError(
            "the sensitivities were measured for other layers than this space's free layers"
        )
    bits = np.asarray(sens.bits, dtype=np.float64)
    macs, weights = _layer_costs(space, costs, channels)
    wa = np.array([choice_bits(int(b), kind) for b in sens.bits], dtype=np.float64)
    per_choice = (
        macs[:, None] * wa[:, 0] * wa[:, 1] if kind == "bitops" else weights[:, None] * bits / 8.0
    )

    def policy(choice: np.ndarray) -> Policy:
        chosen = {
            n: choice_bits(int(sens.bits[c]), kind) for n, c in zip(free, choice, strict=True)
        }
        return Policy(dict(channels), {**space.full_policy().bits, **chosen})

    lowest = np.zeros(len(free), dtype=int)
    fixed_part = costs.of_policy(policy(lowest))[kind] - per_choice[:, 0].sum()
    choice = allocate(sens.omega(), {kind: per_choice}, {kind: budgets[kind] - fixed_part})
    out = policy(choice)
    used = costs.of_policy(out)
    over = [k for k, b in budgets.items() if used[k] > b * (1 + 1e-9)]
    if over:
        raise ValueError(
            f"HAWQ policy exceeds {over}: the channel counts alone do not fit those budgets"
        )
    return out
