"""Does a latency model's error depend on what the answers are timed with? For one batch size
of a finished ``bench_latency_model.py`` output (``BENCH/results.json``, ``BENCH/ws-bB``):

1. ``time``: its answers timed three times in ORT (100 rounds each, models in turn): with the
   unpruned model only, among the table's calibration models (as ``profile-latency`` draws
   them), and with the unpruned model again; per answer the three medians next to the
   table's prediction; every timing stored in OUT.json.
2. ``fit``: from OUT.json, the whole-model terms refitted on the calibration models of the
   second set (through the unpruned point, non-negative, as ``_fit_ort`` fits) in several
   forms of the channel-block term, each scored on the answers of that set.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/latency_timing_context.py time BENCH 64 OUT.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/latency_timing_context.py fit BENCH 64 OUT.json

Timings mean something only on a quiet machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import lsq_linear

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_latency_model import open_workspace  # noqa: E402

from seernet.compression.ort_runtime import load_average  # noqa: E402
from seernet.latency.table import (  # noqa: E402
    ALIGNMENTS,
    ProfileSettings,
    calibration_models,
    measured_latencies_ms,
)
from seernet.space.costs import CostModel  # noqa: E402
from seernet.space.policy import Policy  # noqa: E402


def load(bench: Path, batch: str):
    """(ctx, table, answer names, answers, calibration models) of one batch size."""
    solved = json.loads((bench / "results.json").read_text())["batches"][batch]["solved"]
    ctx, table = open_workspace(bench / f"ws-b{batch}")
    names = [k for k, v in solved.items() if "policy" in v]
    answers = [Policy.from_json(solved[k]["policy"]) for k in names]
    calib = calibration_models(ctx.space, ProfileSettings().calibration, ort=True)
    return ctx, table, names, answers, calib


def time_sets(bench: Path, batch: str, out: Path) -> None:
    ctx, table, names, answers, calib = load(bench, batch)
    space, full = ctx.space, ctx.space.full_policy()
    res = {"load_before": load_average()}
    for key, models in (("alone", [full, *answers]), ("among", [*calib, *answers]),
                        ("alone_again", [full, *answers])):  # fmt: skip
        res[key] = measured_latencies_ms(ctx.model, space, models, table, 100)
    res["load_after"] = load_average()
    out.write_text(json.dumps(res))
    pred = CostModel(space, latency=table).latency(
        torch.as_tensor(np.stack([space.encode(p) for p in answers]))
    )
    n = len(calib)
    for i, k in enumerate(names):
        print(f"{k:18s} predicted {float(pred[i]):7.3f}  alone {res['alone'][1 + i]:7.3f}  "
              f"among {res['among'][n + i]:7.3f}  alone again {res['alone_again'][1 + i]:7.3f}")  # fmt: skip
    print(f"unpruned: alone {res['alone'][0]:.3f}, among {res['among'][0]:.3f}, alone again "
          f"{res['alone_again'][0]:.3f}, at profile time {table.full_model_ms:.3f} ms; load "
          f"{res['load_before']} / {res['load_after']}")  # fmt: skip


def fit_forms(bench: Path, batch: str, out: Path) -> None:
    ctx, table, names, answers, calib = load(bench, batch)
    space, n = ctx.space, len(calib)
    ms = np.array(json.loads(out.read_text())["among"])
    costs = CostModel(space, latency=table)
    x = torch.as_tensor(np.stack([space.encode(p) for p in [*calib, *answers]]))
    with torch.no_grad():
        base = [costs.layer_latency(x).sum(1), *costs.low_bit_features(x)]
        groups = [costs.misaligned_groups(x, m) for m in ALIGNMENTS]
        elements = [costs.misaligned_elements(x, m) for m in ALIGNMENTS]
    forms = {"no block term": base, "per group": base + groups,
             "per element": base + elements, "both (the table's form)": base + groups + elements}  # fmt: skip
    latency = np.array([k.startswith("latency") for k in names])
    for name, cols in forms.items():
        f = np.column_stack([c.numpy() for c in cols])
        coef = lsq_linear(f[1:n] - f[0], ms[1:n] - ms[0], bounds=(0.0, np.inf), method="bvls").x
        err = 100 * ((ms[0] + (f - f[0]) @ coef) / ms - 1)
        a = err[n:]
        print(f"{name:24s} |error| median {np.median(np.abs(err[1:n])):.1f}% on the calibration "
              f"models, {np.median(np.abs(a)):.1f}% on the answers (max {np.abs(a).max():.1f}%); "
              f"mean {a[latency].mean():+.1f}% latency budgets', {a[~latency].mean():+.1f}% FLOPs "
              f"budgets'")  # fmt: skip


if __name__ == "__main__":
    mode, bench, batch, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    (time_sets if mode == "time" else fit_forms)(bench, batch, out)
