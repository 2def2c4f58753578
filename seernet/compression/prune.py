"""Physical channel removal with Torch-Pruning and a pluggable importance criterion.

A criterion scores every channel of a Torch-Pruning group; the lowest-scoring
channels are removed until the group keeps the policy's count. Built-in criteria are
named here; learned ones (LAP's dynamic scores) are made per workspace by
``seernet.compression.criteria`` and passed in.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import nn

from seernet.errors import UserError
from seernet.space.graph import GroupPlan, named_groups
from seernet.space.policy import Policy, PolicySpace
from seernet.tp import tp

# (Torch-Pruning group, name of the group in the policy) -> score per channel. The name
# lets learned criteria (LeGR's per-layer transform) look up their per-group parameters.
Criterion = Callable[[object, str], torch.Tensor]


def _torch_pruning(importance: Callable[[object], torch.Tensor]) -> Criterion:
    return lambda group, name: importance(group)


# Read-only: criteria learned from a workspace are made for it (``RunContext.criterion``)
# and passed in, never added here.
BUILTIN_CRITERIA: Mapping[str, Callable[[], Criterion]] = MappingProxyType({
    "l1": lambda: _torch_pruning(tp.importance.GroupMagnitudeImportance(p=1)),
    "l2": lambda: _torch_pruning(tp.importance.GroupMagnitudeImportance(p=2)),
    "random": lambda: _torch_pruning(tp.importance.RandomImportance()),
})  # fmt: skip


def criterion_names() -> list[str]:
    """Every criterion name a command accepts (built-in and learned)."""
    from seernet.compression.criteria import LEARNED

    return sorted([*BUILTIN_CRITERIA, *LEARNED])


def make_criterion(name: str) -> Criterion:
    """The built-in criterion ``name``; a learned or unknown name is a UserError.

    A learned name (``dynamic``) is checked and answered with a criterion that refuses
    when used: it needs its workspace, ``RunContext.criterion(name)``.
    """
    from seernet.compression.criteria import LEARNED, check_name

    check_name(name)
    if name in LEARNED:

        def needs_workspace(group: object, group_name: str) -> torch.Tensor:
            raise UserError(
                f"criterion {name!r} is learned per workspace: pass criterion=ctx.criterion({name!r})"
            )

        return needs_workspace
    return BUILTIN_CRITERIA[name]()


def _removed(scores: torch.Tensor, plan: GroupPlan, n_remove: int) -> list[int]:
    """Root channels to remove: the ``n_remove`` lowest-scoring ones, or (a group pruned in
    whole units: grouped-conv blocks, tied channels) the units of lowest mean score."""
    if plan.units is None:
        return torch.argsort(scores, stable=True)[:n_remove].tolist()
    units = torch.as_tensor(plan.units)
    order = torch.argsort(scores[units].mean(1), stable=True)[: n_remove // plan.unit]
    return sorted(units[order].flatten().tolist())


def prune_model(
    model: nn.Module,
    space: PolicySpace,
    policy: Policy,
    criterion: str | Criterion = "l1",
    seed: int = 0,
) -> nn.Module:
    """A pruned copy of ``model`` keeping ``policy.channels[g]`` channels of every group.

    ``criterion``: a built-in name, or a criterion made by ``RunContext.criterion``.
    """
    space.validate(policy)
    pruned = copy.deepcopy(model).cpu().eval()
    score = make_criterion(criterion) if isinstance(criterion, str) else criterion
    torch.manual_seed(seed)  # the random criterion draws from torch's global generator
    dg, groups = named_groups(pruned, space.input_shape, space.choices)
    seen = set()
    # Groups are re-derived after each removal, as Torch-Pruning's own pruners do.
    for name, group in groups:
        root, handler = group[0].dep.target.module, group[0].dep.handler
        if name not in policy.channels:
            raise UserError(
                f"group {name!r} of the model is not in the policy: was the policy made for another model?"
            )
        seen.add(name)
        n_remove = len(group[0].idxs) - policy.channels[name]
        if n_remove <= 0:
            continue
        scores = score(group, name).to(torch.float64)
        dg.get_pruning_group(root, handler, _removed(scores, group.plan, n_remove)).prune()
    if seen != set(policy.channels):
        raise UserError(
            f"policy names groups the model does not have: {sorted(set(policy.channels) - seen)[:3]}"
        )
    return pruned
