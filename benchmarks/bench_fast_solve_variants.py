"""Fast-solve variants: which solver settings return better policies, measured.

For a finished ``bench_fast_solve.py`` output folder (its ``ws`` copy holds the fitted
predictor and the store, its ``results.json`` the measured anchors of every cell), each
variant sets constants of ``seernet.steps.solve`` (``RISK=2``, ``TRUST_RADIUS=1`` ...),
runs ``seernet solve`` in this process for every cell, and measures the answers on the
store's protocol (same seed). A variant with no setting reproduces the bench's own fast
answers. Every measurement is stored in ``OUT/variants.json`` by policy (a policy two
variants share is measured once) and reused on a rerun.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_fast_solve_variants.py \\
        --bench benchmarks/out/fast-solve-new200-r2 --variant "" --variant RISK=2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fast_solve import cells, measure_policy, policy_key  # noqa: E402

import seernet.steps.solve as solve  # noqa: E402
from seernet.cli.main import main as seernet_main  # noqa: E402
from seernet.compression.protocol import Protocol  # noqa: E402
from seernet.space.policy import Policy  # noqa: E402
from seernet.steps.context import RunContext  # noqa: E402
from seernet.tables import format_table  # noqa: E402
from seernet.workspace.artifacts import STORE_NAME  # noqa: E402
from seernet.workspace.folder import Workspace  # noqa: E402
from seernet.workspace.store import SampleStore  # noqa: E402


def parse_variant(text: str) -> dict[str, float]:
    """ "RISK=2,TRUST_RADIUS=1" -> {"RISK": 2.0, "TRUST_RADIUS": 1}; "" -> {} (the defaults)."""
    out = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if not hasattr(solve, name):
            raise SystemExit(f"seernet.steps.solve has no constant {name!r}")
        out[name] = type(getattr(solve, name))(float(value))
    return out


@contextlib.contextmanager
def patched(settings: dict[str, float]):
    old = {k: getattr(solve, k) for k in settings}
    for k, v in settings.items():
        setattr(solve, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(solve, k, v)


def solve_cell(ws: Path, flags: list[str]) -> dict:
    """``seernet solve ... --json`` in this process; its one policy document."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = seernet_main(["solve", "--workdir", str(ws), *flags, "--json"])
    if code != 0:
        raise SystemExit(f"solve {' '.join(flags)} exited {code}")
    (doc,) = json.loads(out.getvalue())
    return doc


def best_anchor(arms: dict) -> float | None:
    vals = [r["measured"] for a, r in arms.items() if a != "fast" and r.get("measured") is not None]
    return max(vals) if vals else None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench", type=Path, required=True, help="a bench_fast_solve.py --out folder")
    p.add_argument("--variant", action="append", default=[], help='e.g. "RISK=2"; "" = defaults')
    args = p.parse_args(argv)
    ws = args.bench / "ws"
    anchors = json.loads((args.bench / "results.json").read_text())
    cache_path = args.bench / "variants.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    ctx = RunContext(Workspace(ws), Workspace(ws).read(), torch.device("cpu"))
    with SampleStore.open(ws / STORE_NAME) as store:
        protocol = Protocol(**store.spec.protocol)
    rows = []
    for text in args.variant or [""]:
        settings = parse_variant(text)
        gaps, z = [], []
        for name, flags in cells():
            key = f"{text or 'defaults'}|{name}"
            fast = anchors.get(name, {}).get("fast")
            if key not in cache and not settings and fast is not None:  # the bench's own answer
                x = policy_key(fast["encoded"])
                cache[key] = {
                    "predicted": fast["predicted"],
                    "measured": fast["measured"],
                    "policy": x,
                }
            if key not in cache:
                with patched(settings):
                    doc = solve_cell(ws, flags)
                x = policy_key(doc["encoded"])
                measured = cache.get("policy:" + x)
                if measured is None:
                    measured = measure_policy(ctx, protocol, Policy.from_json(doc["policy"]))
                    cache["policy:" + x] = measured
                cache[key] = {"predicted": doc["predicted"], "measured": measured, "policy": x}
                tmp = cache_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(cache, indent=1))
                os.replace(tmp, cache_path)
            r = cache[key]
            best = best_anchor(anchors.get(name, {}))
            gaps.append(np.nan if best is None else r["measured"] - best)
            z.append((r["measured"] - r["predicted"]["mean"]) / max(r["predicted"]["std"], 1e-9))
            print(f"{text or 'defaults'} {name}: {r['predicted']['mean']:.2f} +/- "
                  f"{r['predicted']['std']:.2f} -> {r['measured']:.2f} (gap {gaps[-1]:+.2f})",
                  flush=True)  # fmt: skip
        g = np.asarray(gaps)
        rows.append([text or "defaults", f"{int(np.sum(g >= -0.3))}/{len(g)}",
                     f"{int(np.sum(g > 0.3))}", f"{np.nanmin(g):+.2f}", f"{np.nanmean(g):+.2f}",
                     f"{int(np.sum(np.abs(z) <= 2))}/{len(z)}"])  # fmt: skip
    head = ["variant", ">= best - 0.3", "> best + 0.3", "worst gap", "mean gap", "within 2 std"]
    text = format_table(head, rows)
    (args.bench / "variants.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
