"""Device selection: ``auto`` means CUDA when present, else CPU; never hard-coded.

The ``auto`` rule is ``predictor.device``'s (one implementation); this adds what a name
typed by a user needs: a one-line error for a name torch does not know or a GPU that is
not there.
"""

from __future__ import annotations

import torch

from predictor.device import resolve_device as _torch_device
from seernet.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N`` into a device, checking it exists."""
    try:
        dev = _torch_device(name)
    except RuntimeError as exc:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device {name!r} requested but CUDA is not available here: use --device cpu"
        )
    return dev
