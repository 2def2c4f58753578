"""Budget units: parse ``150M``, ``1.2G``, ``800K``, ``2MB``, ``3ms``, ``50%``; print them back.

Counts (FLOPs = MACs, BitOPs, parameters) use decimal K/M/G/T. Sizes are bytes with
B/KB/MB/GB (decimal, 1 KB = 1000 B). Latency is in ms (or us, s). A percentage is of
the unpruned model's cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from seernet.errors import UserError

_COUNT = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_BYTES = {"": 1.0, "B": 1.0, "KB": 1e3, "MB": 1e6, "GB": 1e9}
_TIME_MS = {"MS": 1.0, "US": 1e-3, "S": 1e3}
KINDS = {"count": _COUNT, "bytes": _BYTES, "ms": _TIME_MS}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z%]*)\s*$")


@dataclass(frozen=True)
class Budget:
    """A budget as given: an absolute value in base units, or a fraction of the unpruned model."""

    text: str
    value: float | None = None
    fraction: float | None = None

    def resolve(self, unpruned: float) -> float:
        """Absolute budget given the unpruned model's cost."""
        return self.value if self.value is not None else self.fraction * unpruned


def parse_budget(text: str, kind: str = "count", flag: str = "--flops") -> Budget:
    """Parse one budget; malformed units, zero or negative values are a UserError."""
    units = KINDS[kind]
    m = _PATTERN.match(text)
    examples = {
        "count": "150M, 1.2G, 800K, 50%",
        "bytes": "2MB, 500KB, 50%",
        "ms": "3ms, 500us, 50%",
    }[kind]
    if not m:
        raise UserError(
            f"{flag} {text!r} is not a budget: use a positive number with a unit, e.g. {examples}"
        )
    number, unit = float(m.group(1)), m.group(2).upper()
    if number <= 0:
        raise UserError(f"{flag} {text!r}: a budget must be positive")
    if unit == "%":
        if number > 1000:
            raise UserError(
                f"{flag} {text!r}: a percentage of the unpruned model must be at most 1000%"
            )
        return Budget(text, fraction=number / 100.0)
    if unit not in units:
        raise UserError(f"{flag} {text!r}: unknown unit {m.group(2)!r}; use e.g. {examples}")
    return Budget(text, value=number * units[unit])


def parse_budget_list(text: str, kind: str = "count", flag: str = "--flops") -> list[Budget]:
    """Comma-separated budgets (``10M,15M,20M``)."""
    parts = [t for t in text.split(",") if t.strip()]
    if not parts:
        raise UserError(f"{flag} needs at least one budget")
    return [parse_budget(t, kind, flag) for t in parts]


def format_count(x: float) -> str:
    """``153600000`` -> ``153.6M``."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.4g}{unit}"
    return f"{x:.4g}"


def format_bytes(x: float) -> str:
    """``1500000`` -> ``1.5MB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.4g}{unit}"
    return f"{x:.4g}B"


def format_ms(x: float) -> str:
    return f"{x:.3g}ms"
