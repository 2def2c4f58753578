"""Torch-Pruning, imported once for every module here, without timm.

Torch-Pruning's op counter imports timm whenever it is installed (seernet's test extra
installs it), only to count the FLOPs of timm's attention layers, which seernet never asks
it for (``seernet.space.mac_counter`` counts). Importing timm took 3-9 s on two busy cores,
the larger part of ``fit-predictor``'s time, so it is hidden while Torch-Pruning loads;
a program that imported timm itself keeps it.
"""

from __future__ import annotations

import sys

if "timm" in sys.modules or "torch_pruning" in sys.modules:
    import torch_pruning as tp
else:
    sys.modules["timm"] = None  # "import timm" raises ImportError: Torch-Pruning skips it
    try:
        import torch_pruning as tp
    finally:
        del sys.modules["timm"]

__all__ = ["tp"]
