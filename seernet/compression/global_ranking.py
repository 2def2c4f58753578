"""Torch-Pruning's global ranking as a policy: the allocation a user of that tool would get.

``tp.pruner.MetaPruner(global_pruning=True)`` with Torch-Pruning's group-norm importance
(``GroupMagnitudeImportance(p=2)``: L2 norm over every coupled parameter of a group,
mean-normalised per group, then ranked across all groups) removes the ``pruning_ratio``
fraction of channels with the lowest global scores, no layer losing more than the space's
``max_prune``. Only the kept *counts* become a policy: each group's count is snapped up to
the nearest allowed level, and ``compress`` picks the channels with its own criterion.

Two users: the ``tp-global`` baseline of ``benchmarks/bench_end_to_end.py`` (FLOPs budget,
8 bits), and ``solve --refine``, which measures this allocation first so that the policy it
returns is, by measurement, never more than refine's noise margin below the one a
Torch-Pruning user already has.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from seernet.space.costs import CostModel
from seernet.space.graph import output_layer
from seernet.space.policy import Policy, PolicySpace
from seernet.tp import tp


def kept_counts(model: nn.Module, space: PolicySpace, ratio: float) -> dict[str, int]:
    """Channels per seernet group that MetaPruner keeps at global ``ratio`` (not snapped)."""
    pruned = copy.deepcopy(model).cpu().eval()
    roots = {g.name: pruned.get_submodule(g.name) for g in space.groups}
    example = torch.zeros(space.input_shape)
    with torch.enable_grad():  # Torch-Pruning traces with autograd
        pruner = tp.pruner.MetaPruner(
            pruned, example, importance=tp.importance.GroupMagnitudeImportance(p=2), global_pruning=True,
            pruning_ratio=ratio, max_pruning_ratio=space.choices.max_prune,
            ignored_layers=[pruned.get_submodule(output_layer(pruned, example))],
        )  # fmt: skip
        pruner.step()
    return {
        name: m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        for name, m in roots.items()
    }


def snapped(space: PolicySpace, kept: dict[str, int], bits: int) -> Policy:
    """Each count raised to the nearest allowed level; every free layer at ``bits``."""
    channels = {
        g.name: next((k for k in g.keep if k >= kept[g.name]), g.keep[-1]) for g in space.groups
    }
    return Policy(channels, space.full_policy(bits).bits)


def global_ranking_policy(
    model: nn.Module,
    space: PolicySpace,
    costs: CostModel,
    budgets: Mapping[str, float],
    bits: int = 8,
    iters: int = 24,
) -> tuple[Policy, float]:
    """The policy (every free layer at ``bits``) of the smallest global ratio whose snapped
    policy meets every budget, and that ratio; ValueError when even ``max_prune`` does not."""

    def fits(ratio: float) -> bool:
        policy = snapped(space, kept_counts(model, space, ratio), bits)
        spent = costs.of_policy(policy)
        return all(spent[k] <= b for k, b in budgets.items())

    lo, hi = 0.0, space.choices.max_prune
    if not fits(hi):
        wanted = ", ".join(f"{k} {b:.0f}" for k, b in budgets.items())
        raise ValueError(
            f"Torch-Pruning cannot reach {wanted} at {bits} bits within max_prune {hi}"
        )
    if fits(lo):
        hi = lo
    for _ in range(iters):  # invariant: fits(hi), not fits(lo)
        if hi - lo < 1e-4:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return snapped(space, kept_counts(model, space, hi), bits), hi
