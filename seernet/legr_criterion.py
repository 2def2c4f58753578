"""Criterion ``legr``: LeGR's learned affine transform of the combined group norm.

Registered for a workspace by ``install(ws)``; the parameters are read from the
workspace's ``legr.json`` when the criterion is made (so a workspace without one only
fails if ``--criterion legr`` is actually used, with a message to run ``seernet legr``).

Honest note: with ``alpha > 0`` the affine transform does not change the order of
channels *inside* a group, so as a per-group criterion ``legr`` removes the same
channels as the group's combined L2 norm (the ``l2`` criterion). LeGR's value is how
many channels each group keeps, which ``seernet legr`` puts into its policies.
"""

from __future__ import annotations

import torch

from seernet.errors import UserError
from seernet.prune import Criterion, register_criterion
from seernet.workspace import Workspace


def make(ws: Workspace) -> Criterion:
    """The ``legr`` criterion of ``ws``: ``alpha_g * s / ||s||_2 + kappa_g`` per channel."""
    from seernet.legr import LEGR_NAME, group_importance, load

    fingerprint = (ws.read().space or {}).get("fingerprint") if ws.exists() else None
    doc = load(ws, fingerprint) if fingerprint else None
    if doc is None:
        raise UserError(f"criterion 'legr' needs {ws.path(LEGR_NAME)}: run 'seernet legr' first")
    alpha, kappa = doc["alpha"], doc["kappa"]
    importance = group_importance()

    def score(group: object, name: str) -> torch.Tensor:
        if name not in alpha:
            raise UserError(f"{LEGR_NAME} has no parameters for group {name!r}: rerun 'seernet legr --relearn'")
        s = importance(group).to(torch.float64).abs()
        return alpha[name] * s / s.norm().clamp_min(1e-300) + kappa[name]

    return score


def install(ws: Workspace) -> None:
    """Register ``legr`` for ``ws`` (reading ``legr.json`` is deferred to first use)."""
    register_criterion("legr", lambda: make(ws))
