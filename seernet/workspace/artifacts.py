"""The files a workspace holds, named once, and the one atomic JSON write.

Every step reads and writes its artifacts through these names (``ws.path(STORE_NAME)``),
so a file is renamed in one place. Folders: ``policies/<name>.json`` (solve, legr),
``compressed/<name>/`` (compress), ``report/`` (report, fit-predictor's plot).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CONFIG_NAME = "seernet.json"  # the run's identity: model, weights, dataset, split, space
STORE_NAME = "samples.h5"  # measured (policy, accuracy) samples: collect, solve --verify/--refine
PREDICTOR_NAME = "predictor.pt"  # the fitted predictor: fit-predictor, solve --refine
SENSITIVITY_NAME = "sensitivity.json"  # per-coordinate damage tables: collect / fit-predictor
RANKING_NAME = "ranking.json"  # the global ranking's channel counts per pruning ratio: solve
TABLE_NAME = "latency.json"  # LAP's per-layer latency table: profile-latency
SCORES_NAME = "dynamic_scores.pt"  # LAP's dynamic filter scores: dynamic-scores
LEGR_NAME = "legr.json"  # LeGR's learned affine transform: legr
POLICIES_NAME = "policies"  # one <name>.json per solved policy: solve, legr


def write_json(path: Path, obj: Any, indent: int = 2, sort_keys: bool = False) -> None:
    """Atomic JSON write: a temporary file next to ``path``, then ``os.replace`` over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")
    os.replace(tmp, path)
