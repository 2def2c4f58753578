"""How the fast-solve bench's predictor rates what it did not choose: measured - predicted
for every measured arm of a ``bench_fast_solve.py`` output (fast answers and anchors).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_anchor_errors.py BENCH [MIN_ACC]

The predictor is the one in ``BENCH/ws`` (what ``seernet solve`` used); arms measured
below ``MIN_ACC`` (default 50) are left out (failed anchors, e.g. 2-bit activations).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_protocol_noise import arms_of  # noqa: E402

from seernet.steps.context import RunContext  # noqa: E402
from seernet.steps.solve import load_predictor, predict  # noqa: E402
from seernet.workspace.folder import Workspace  # noqa: E402


def errors(
    arms: dict, rate: Callable[[np.ndarray], float], min_acc: float
) -> dict[str, list[float]]:
    """{"fast" or "anchor": [measured - rate(policy), ...]} over every cell of
    ``bench_protocol_noise.arms_of``'s {cell: {arm: (policy key, accuracy)}}."""
    out: dict[str, list[float]] = {"fast": [], "anchor": []}
    for cell in arms.values():
        for arm, (key, acc) in cell.items():
            if acc >= min_acc:
                x = np.asarray(json.loads(key), dtype=np.float64)
                out["fast" if arm == "fast" else "anchor"].append(acc - rate(x))
    return out


def main(argv: list[str]) -> None:
    bench, min_acc = Path(argv[0]), float(argv[1]) if len(argv) > 1 else 50.0
    ws = Workspace(bench / "ws")
    predictor = load_predictor(RunContext(ws, ws.read(), torch.device("cpu")))
    arms = arms_of(bench, variants=False)
    for kind, e in errors(arms, lambda x: predict(predictor, x)[0], min_acc).items():
        e = np.asarray(e)
        print(f"{kind}: {len(e)} arms, measured - predicted median {np.median(e):+.2f}, "
              f"mean {e.mean():+.2f}, {int((e > 0).sum())} above their prediction")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
