"""Checkpoints: a state dict plus JSON metadata, loaded with ``weights_only=True``.

A model file never runs code. Plain state dicts (e.g. a user's own torchvision
weights) are accepted as well; then the metadata is empty.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seernet.errors import UserError


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write ``{"state_dict", "meta"}`` atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"state_dict": model.state_dict(), "meta": json.dumps(meta)}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (state_dict, meta) from a seernet checkpoint or a plain state dict."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"checkpoint {path} does not exist: check --weights or run 'seernet pretrain'"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path} is not a loadable weights-only checkpoint ({first[:120]})"
        ) from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        meta = json.loads(obj["meta"]) if isinstance(obj.get("meta"), str) else {}
        obj = obj["state_dict"]
    else:
        meta = {}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} does not hold a state dict of tensors")
    return obj, meta


def load_weights(model: nn.Module, path: str | Path, model_name: str = "model") -> dict[str, Any]:
    """Load weights from ``path`` into ``model``; a checkpoint of another architecture is refused."""
    state, meta = read_checkpoint(path)
    if meta.get("model") and meta["model"] != model_name:
        raise UserError(f"{path} holds weights for {meta['model']!r}, not {model_name!r}")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        detail = (missing or unexpected or mismatched)[0]
        raise UserError(
            f"{path} does not fit {model_name!r} ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(mismatched)} mis-shaped tensors, e.g. {detail!r}): is it a checkpoint of another model or class count?"
        )
    model.load_state_dict(state)
    return meta
