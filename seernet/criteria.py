"""Importance criteria whose parameters are learned and kept in a workspace.

Built-in criteria (l1, l2, random) live in ``seernet.prune``. Learned ones -- LeGR's
per-layer affine transform of filter norms, LAP's dynamic filter scores -- need files
of the workspace, so each has a module whose ``install(ws)`` registers the criterion
for that workspace; ``RunContext`` calls ``install_workspace_criteria`` on creation.
"""

from __future__ import annotations

import importlib

from seernet.workspace import Workspace

# Modules with an ``install(ws: Workspace) -> None`` function.
INSTALLERS: tuple[str, ...] = ("seernet.legr_criterion", "seernet.dynamic_criterion")


def install_workspace_criteria(ws: Workspace) -> None:
    """Register every learned criterion for ``ws`` (each says itself what it still needs)."""
    for module in INSTALLERS:
        importlib.import_module(module).install(ws)
