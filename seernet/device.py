"""Device selection: ``auto`` means CUDA when present, else CPU; never hard-coded."""

from __future__ import annotations

import torch

from seernet.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N`` into a device, checking it exists."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device {name!r} requested but CUDA is not available here: use --device cpu"
        )
    return dev
