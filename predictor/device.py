"""Where a predictor trains: ``"auto"`` means CUDA when present, else the CPU.

The one implementation of the ``auto`` rule; ``seernet.device`` adds the checks and
one-line errors a user-typed name needs.
"""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
