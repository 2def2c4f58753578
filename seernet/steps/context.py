"""Everything a pipeline step needs about its run, loaded once from the workspace."""

from __future__ import annotations

import copy
import sys
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import torch
from torch import nn

from seernet.compression.criteria import workspace_criterion
from seernet.data.datasets import DataSplits
from seernet.errors import UserError
from seernet.models import create_model
from seernet.models.base_model import build_model, load_splits
from seernet.space.costs import CostModel
from seernet.space.graph import build_space
from seernet.space.policy import PolicySpace, SpaceChoices
from seernet.workspace.folder import RunConfig, Workspace

if TYPE_CHECKING:
    from seernet.compression.prune import Criterion


@dataclass
class RunContext:
    """The workspace, its config, and lazily the data, base model, space and costs."""

    ws: Workspace
    config: RunConfig
    device: torch.device
    # A solve searches only kept counts that are multiples of this, or full (``solve
    # --channel-multiple``; ``seernet.steps.solve.solve_context`` sets it on a copy).
    channel_multiple: int = 1
    _criteria: dict[str, Criterion] = field(default_factory=dict, init=False, repr=False)

    def criterion(self, name: str) -> Criterion:
        """The importance criterion ``name`` for this workspace (learned ones read its files once)."""
        if name not in self._criteria:
            self._criteria[name] = workspace_criterion(self.ws, name)
        return self._criteria[name]

    @cached_property
    def splits(self) -> DataSplits:
        return load_splits(self.config)

    @cached_property
    def model(self) -> nn.Module:
        return build_model(self.config, self.splits).to(self.device).eval()

    @cached_property
    def space(self) -> PolicySpace:
        s = self.config.space
        try:
            choices = SpaceChoices(
                **{k: (tuple(v) if k == "bits" else v) for k, v in s["choices"].items()}
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(
                f"{self.ws.config_path}: no valid policy space recorded ({exc}); run 'seernet collect' first"
            ) from exc
        # The architecture alone defines the space: no data or weights are needed here.
        arch = create_model(self.config.model, s["num_classes"], s["input_shape"][1])
        space = build_space(arch, tuple(s["input_shape"]), choices)
        if space.fingerprint != s.get("fingerprint"):
            raise UserError(
                f"the policy space of {self.config.model!r} no longer matches the workspace's fingerprint; use a new --workdir"
            )
        return space

    @cached_property
    def costs(self) -> CostModel:
        return CostModel(self.space)


def record_space(ctx: RunContext, choices: SpaceChoices, arch: nn.Module | None = None) -> None:
    """Fix the run's policy space in ``seernet.json`` (first ``collect`` only); ``arch`` is the
    model (a copy is traced), by default the registry's or plug-in's."""
    sp = ctx.splits
    shape = sp.input_shape
    if arch is None:
        arch = create_model(ctx.config.model, sp.num_classes, sp.in_channels)
    space = build_space(copy.deepcopy(arch).cpu().eval(), shape, choices)
    ctx.config.space = {
        "choices": asdict(choices), "input_shape": list(shape), "num_classes": sp.num_classes,
        "fingerprint": space.fingerprint, "dim": space.dim,
    }  # fmt: skip
    ctx.ws.write(ctx.config)
    ctx.__dict__["space"] = space
    for note in space.notes:  # what the space leaves alone (unpruned or unquantized), and why
        print(f"note: {note}", file=sys.stderr)
