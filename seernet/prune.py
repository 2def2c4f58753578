"""Physical channel removal with Torch-Pruning and a pluggable importance criterion.

A criterion scores every channel of a Torch-Pruning group; the lowest-scoring
channels are removed until the group keeps the policy's count. Criteria live in a
registry so later methods (LeGR, LAP) can add theirs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch_pruning as tp
from torch import nn

from seernet.errors import UserError
from seernet.space import Policy, PolicySpace
from seernet.space_graph import named_groups

# (Torch-Pruning group, name of the group in the policy) -> score per channel. The name
# lets learned criteria (LeGR's per-layer transform) look up their per-group parameters.
Criterion = Callable[[object, str], torch.Tensor]


def _torch_pruning(importance: Callable[[object], torch.Tensor]) -> Criterion:
    return lambda group, name: importance(group)


_CRITERIA: dict[str, Callable[[], Criterion]] = {
    "l1": lambda: _torch_pruning(tp.importance.GroupMagnitudeImportance(p=1)),
    "l2": lambda: _torch_pruning(tp.importance.GroupMagnitudeImportance(p=2)),
    "random": lambda: _torch_pruning(tp.importance.RandomImportance()),
}


def register_criterion(name: str, factory: Callable[[], Criterion]) -> None:
    """Add an importance criterion: ``factory()`` returns ``scores = criterion(group, name)``."""
    _CRITERIA[name] = factory


def criterion_names() -> list[str]:
    return sorted(_CRITERIA)


def make_criterion(name: str) -> Criterion:
    if name not in _CRITERIA:
        raise UserError(f"unknown importance criterion {name!r}; known: {', '.join(criterion_names())}")
    return _CRITERIA[name]()


def prune_model(
    model: nn.Module, space: PolicySpace, policy: Policy, criterion: str = "l1", seed: int = 0
) -> nn.Module:
    """A pruned copy of ``model`` keeping ``policy.channels[g]`` channels of every group."""
    space.validate(policy)
    pruned = copy.deepcopy(model).cpu().eval()
    score = make_criterion(criterion)
    torch.manual_seed(seed)  # the random criterion draws from torch's global generator
    dg, groups = named_groups(pruned, space.input_shape)
    seen = set()
    # Groups are re-derived after each removal, as Torch-Pruning's own pruners do.
    for name, group in groups:
        root, handler = group[0].dep.target.module, group[0].dep.handler
        if name not in policy.channels:
            raise UserError(f"group {name!r} of the model is not in the policy: was the policy made for another model?")
        seen.add(name)
        n_remove = len(group[0].idxs) - policy.channels[name]
        if n_remove <= 0:
            continue
        order = torch.argsort(score(group, name).to(torch.float64), stable=True)
        dg.get_pruning_group(root, handler, order[:n_remove].tolist()).prune()
    if seen != set(policy.channels):
        raise UserError(f"policy names groups the model does not have: {sorted(set(policy.channels) - seen)[:3]}")
    return pruned
