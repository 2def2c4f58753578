"""Where and on how many threads torch runs: ``"auto"`` means CUDA when present, else the CPU.

The one implementation of the ``auto`` rule and of the thread-count context for
``predictor`` and ``seernet`` (device checks with one-line errors, latency timings).
``search`` keeps its own three-line ``torch_threads``: the two algorithm packages never
import each other (``tests/search/test_boundaries.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` torch intra-op threads, then restore; ``None`` changes
    nothing. Yields the count in use (what a latency table records)."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(int(n))
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
