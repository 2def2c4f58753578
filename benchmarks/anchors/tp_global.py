"""Torch-Pruning's own global pruning, as a user of that tool would run it, mapped to a policy.

``tp.pruner.MetaPruner(global_pruning=True)`` with Torch-Pruning's group-norm importance
(``GroupMagnitudeImportance(p=2)``: L2 norm over every coupled parameter of a group,
mean-normalised per group, then ranked across all groups) removes the ``pruning_ratio``
fraction of channels with the lowest global scores, no layer losing more than the space's
``max_prune``. Only the kept *counts* carry over to seernet: each group's count is snapped
up to the nearest allowed level and ``compress`` picks the channels with its own criterion,
like every other method here. The ratio is bisected so that the snapped policy's FLOPs
(seernet's cost model) are the largest that fit the budget.
"""

from __future__ import annotations

import copy

import torch
import torch_pruning as tp
from torch import nn

from seernet.space.costs import CostModel
from seernet.space.policy import Policy, PolicySpace, classifier_name


def kept_counts(model: nn.Module, space: PolicySpace, ratio: float) -> dict[str, int]:
    """Channels per seernet group that MetaPruner keeps at global ``ratio`` (not snapped)."""
    pruned = copy.deepcopy(model).cpu().eval()
    roots = {g.name: pruned.get_submodule(g.name) for g in space.groups}
    example = torch.zeros(space.input_shape)
    with torch.enable_grad():  # Torch-Pruning traces with autograd
        pruner = tp.pruner.MetaPruner(
            pruned, example, importance=tp.importance.GroupMagnitudeImportance(p=2), global_pruning=True,
            pruning_ratio=ratio, max_pruning_ratio=space.choices.max_prune,
            ignored_layers=[pruned.get_submodule(classifier_name(pruned))],
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


def tp_global_policy(
    model: nn.Module,
    space: PolicySpace,
    costs: CostModel,
    flops: float,
    bits: int = 8,
    iters: int = 24,
) -> tuple[Policy, float]:
    """The policy of the smallest global ratio whose snapped FLOPs fit ``flops``, and that ratio."""

    def fits(ratio: float) -> bool:
        return (
            costs.of_policy(snapped(space, kept_counts(model, space, ratio), bits))["flops"]
            <= flops
        )

    lo, hi = 0.0, space.choices.max_prune
    if not fits(hi):
        raise ValueError(f"Torch-Pruning cannot reach {flops:.0f} FLOPs within max_prune {hi}")
    if fits(lo):
        hi = lo
    for _ in range(iters):  # invariant: fits(hi), not fits(lo)
        if hi - lo < 1e-4:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return snapped(space, kept_counts(model, space, hi), bits), hi
