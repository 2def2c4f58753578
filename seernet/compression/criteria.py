"""Importance criteria by name, resolved for one workspace: ``RunContext.criterion(name)``.

Built-in criteria (l1, l2, random) live in ``seernet.compression.prune`` and need nothing else.
Learned ones need files of a workspace, so they are made *for* a workspace and passed
explicitly to whatever prunes; nothing is registered globally, so one workspace's
scores can never be used for another.

- ``dynamic``: LAP's dynamic filter scores (``seernet.compression.dynamic_criterion``).
- ``legr`` is not a criterion: with ``alpha > 0`` LeGR's affine transform keeps the order
  of channels inside a group, so it pruned exactly as ``l2`` (asserted in
  ``tests/test_legr_cmd.py``). LeGR's value is how many channels each group keeps,
  which ``seernet legr`` writes into its policies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seernet.errors import UserError

if TYPE_CHECKING:
    from seernet.compression.prune import Criterion
    from seernet.workspace.folder import Workspace

LEARNED: tuple[str, ...] = ("dynamic",)
REMOVED: dict[str, str] = {
    "legr": "criterion 'legr' was removed: it pruned exactly as 'l2' (LeGR's transform keeps the order of "
    "channels inside a group); use --criterion l2 with the policies of 'seernet legr'",
}


def check_name(name: str) -> None:
    """A UserError for a removed or unknown criterion name."""
    from seernet.compression.prune import BUILTIN_CRITERIA

    if name in REMOVED:
        raise UserError(REMOVED[name])
    if name not in BUILTIN_CRITERIA and name not in LEARNED:
        known = sorted([*BUILTIN_CRITERIA, *LEARNED])
        raise UserError(f"unknown importance criterion {name!r}; known: {', '.join(known)}")


def workspace_criterion(ws: Workspace, name: str) -> Criterion:
    """The criterion ``name`` for ``ws``: a built-in one, or one learned from ``ws``'s files."""
    from seernet.compression.prune import make_criterion

    check_name(name)
    if name == "dynamic":
        from seernet.compression.dynamic_criterion import make

        return make(ws)
    return make_criterion(name)


def builtin_criterion(name: str) -> Criterion:
    """A criterion that needs no workspace; a learned name is refused with how to get it."""
    from seernet.compression.prune import make_criterion

    check_name(name)
    if name in LEARNED:
        raise UserError(
            f"criterion {name!r} is learned per workspace: pass criterion=ctx.criterion({name!r})"
        )
    return make_criterion(name)
