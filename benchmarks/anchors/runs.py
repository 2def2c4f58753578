"""The end-to-end bench's store of finished runs, and how their results are summarised.

A run is one policy fine-tuned and tested once. Its key hashes everything that decides
the result: the fine-tuning settings (``asdict(CompressSettings)``, seed included), the
policy, the policy space and the run's identity (model, weights, data split). Two methods
that arrive at the same policy share one run; a changed recipe or policy gets a new key,
so a rerun never reuses a stale result and skips every run already stored.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from seernet.space.policy import Policy
from seernet.steps.compress import CompressSettings


def digest(obj: Any) -> str:
    """Short stable hash of a JSON-able object (key order ignored)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


# Settings that change only how the exports are written and timed, never the fine-tuned
# model or its accuracy: runs made before they existed stay valid.
EXPORT_ONLY = frozenset({"ort_threads", "qdq_residuals"})


def run_key(settings: CompressSettings, policy: Policy | dict, identity: dict) -> str:
    """Key of one run: fine-tuning recipe + policy + what model, space and data it is about."""
    pol = policy.to_json() if isinstance(policy, Policy) else policy
    recipe = {k: v for k, v in asdict(settings).items() if k not in EXPORT_ONLY}
    return digest({"settings": recipe, "policy": pol, "identity": identity})


class RunStore:
    """One JSON file per finished run, ``<root>/<key>.json``, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def done(self, key: str) -> bool:
        return self.path(key).is_file()

    def load(self, key: str) -> dict:
        return json.loads(self.path(key).read_text())

    def save(self, key: str, record: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path(key).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, self.path(key))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def clear_win(a: list[float], b: list[float]) -> bool:
    """``a`` beats ``b`` only if its mean is higher by more than the larger of the two stds."""
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    return ma - mb > max(sa, sb)


def verdict(a: list[float], b: list[float]) -> str:
    """'win', 'loss' or 'tie' (the gap within the larger std) of ``a`` against ``b``."""
    return "win" if clear_win(a, b) else "loss" if clear_win(b, a) else "tie"
