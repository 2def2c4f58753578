"""How much does one measurement on the collect protocol move with the protocol's seed?

``bench_fast_solve.py`` judges a fast answer by its gap to the best anchor, each measured
once on the store's protocol with the store's seed. The protocol's seed picks the batches
that re-estimate BatchNorm and the fine-tuning batches, so a policy's accuracy on it carries
a seed-dependent jitter, and the best of two or three anchors is the luckiest of them. This
bench re-measures every measured arm of a finished ``bench_fast_solve.py`` output (fast
answer and anchors, and with ``--variants`` the answers ``bench_fast_solve_variants.py``
stored) with ``--seeds`` other protocol seeds, then reports

- the seed-to-seed standard deviation of one measurement (pooled over policies), and of
  the difference between two policies of one cell (the same batches serve both, so it can
  be smaller than the sum of their spreads);
- the bench's verdicts (fast >= best anchor - 0.3, worst gap) at the store's seed and on
  the mean over all seeds.

Every measurement is stored in ``OUT/noise.json`` by (seed, policy) and reused on a rerun.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_protocol_noise.py \\
        --bench benchmarks/out/fast-solve-gr200 --seeds 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fast_solve import measure_policy, policy_key  # noqa: E402

from seernet.compression.protocol import Protocol  # noqa: E402
from seernet.steps.context import RunContext  # noqa: E402
from seernet.tables import format_table  # noqa: E402
from seernet.workspace.artifacts import STORE_NAME  # noqa: E402
from seernet.workspace.folder import Workspace  # noqa: E402
from seernet.workspace.store import SampleStore  # noqa: E402

TOLERANCE = 0.3  # issue #22's "within 0.3 of the best anchor"


def arms_of(bench: Path, variants: bool) -> dict[str, dict[str, tuple[str, float]]]:
    """{cell: {arm: (policy key, accuracy at the store's seed)}} of every measured arm."""
    out: dict[str, dict[str, tuple[str, float]]] = {}
    for cell, arms in json.loads((bench / "results.json").read_text()).items():
        for arm, r in arms.items():
            if isinstance(r, dict) and "encoded" in r and r.get("measured") is not None:
                out.setdefault(cell, {})[arm] = (policy_key(r["encoded"]), float(r["measured"]))
    path = bench / "variants.json"
    if variants and path.is_file():
        for k, r in json.loads(path.read_text()).items():
            name, _, cell = k.partition("|")
            if cell and cell in out:  # "defaults": the answer of the predictor now in ws
                out[cell][f"fast[{name}]"] = (r["policy"], float(r["measured"]))
    return out


def measure_all(bench: Path, arms: dict, seeds: list[int]) -> dict[str, float]:
    """{"seed|policy": accuracy}, measured where missing and saved after each."""
    path = bench / "noise.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    ws = bench / "ws"
    ctx = RunContext(Workspace(ws), Workspace(ws).read(), torch.device("cpu"))
    with SampleStore.open(ws / STORE_NAME) as store:
        base = Protocol(**store.spec.protocol)
    keys = sorted({k for cell in arms.values() for k, _ in cell.values()})
    todo = [(s, k) for s in seeds for k in keys if f"{s}|{k}" not in done]
    for i, (seed, k) in enumerate(todo):
        policy = ctx.space.decode(np.asarray(json.loads(k)))
        done[f"{seed}|{k}"] = measure_policy(ctx, replace(base, seed=seed), policy)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(done, indent=1))
        os.replace(tmp, path)
        print(f"[{i + 1}/{len(todo)}] seed {seed}: {done[f'{seed}|{k}']:.2f}", flush=True)
    return done


def verdicts(gaps: dict[str, float]) -> str:
    """Issue #22's counts: within 0.3 of the best anchor, worst gap, and the 9x/4x cells
    more than 0.3 above it."""
    g = np.asarray(list(gaps.values()))
    low = [v for c, v in gaps.items() if c.endswith(("mixed9", "mixed4"))]
    return (f"{int(np.sum(g >= -TOLERANCE))}/{len(g)} within {TOLERANCE}, worst {g.min():+.2f}, "
            f"mean {g.mean():+.2f}, {sum(v > TOLERANCE for v in low)}/{len(low)} 9x/4x cells above")  # fmt: skip


def seed_accuracies(cell: dict, done: dict, seeds: list[int]) -> dict[str, np.ndarray]:
    """{arm: accuracies at the store's seed, then at each of ``seeds``} of one cell."""
    return {a: np.array([v, *(done[f"{s}|{k}"] for s in seeds)]) for a, (k, v) in cell.items()}


def anchor_arms(accs: dict) -> list[str]:
    return [a for a in accs if not a.startswith("fast")]


def gaps_of(accs: dict, arm: str) -> tuple[float, float]:
    """``arm`` minus the best anchor: at the store's seed, and on the seed mean."""
    anchors = anchor_arms(accs)
    return (accs[arm][0] - max(accs[a][0] for a in anchors),
            accs[arm].mean() - max(accs[a].mean() for a in anchors))  # fmt: skip


def variant_lines(arms: dict, done: dict, seeds: list[int]) -> list[str]:
    """The same two verdicts for every other fast answer (``--variants``) found in all cells."""
    names = sorted({a for cell in arms.values() for a in cell if a.startswith("fast[")})
    lines = []
    for name in names:
        if not all(name in cell for cell in arms.values()):
            continue
        gaps = {c: gaps_of(seed_accuracies(cell, done, seeds), name) for c, cell in arms.items()}
        first, mean = ({c: g[i] for c, g in gaps.items()} for i in (0, 1))
        lines.append(
            f"{name}: at the store's seed {verdicts(first)}; on the seed mean {verdicts(mean)}"
        )
    return lines


def main_arm(arms: dict) -> str:
    """The bench's own fast answer, or, in a bench copy scored by variants alone
    (``rescore_fast_solve.sh``), the first variant that every cell has."""
    names = ["fast", *sorted({a for cell in arms.values() for a in cell if a.startswith("fast[")})]
    for name in names:
        if all(name in cell for cell in arms.values()):
            return name
    raise SystemExit("no fast answer is measured in every cell: run bench_fast_solve.py first")


def report(arms: dict, done: dict, seeds: list[int], base_seed: int) -> str:
    fast = main_arm(arms)
    rows, spreads, diffs = [], {}, []
    gaps = {"store seed": {}, "seed mean": {}}
    for cell, cell_arms in arms.items():
        accs = seed_accuracies(cell_arms, done, seeds)
        spreads.update({k: accs[a].std(ddof=1) for a, (k, _) in cell_arms.items()})
        anchors = anchor_arms(accs)
        best = max(anchors, key=lambda a: accs[a].mean())
        diffs.append((accs[fast] - accs[best]).std(ddof=1))
        gaps["store seed"][cell], gaps["seed mean"][cell] = gaps_of(accs, fast)
        rows.append([cell, *(f"{accs[a].mean():.2f} +/- {accs[a].std(ddof=1):.2f}" for a in (fast, *anchors)),
                     f"{gaps['store seed'][cell]:+.2f}", f"{gaps['seed mean'][cell]:+.2f}"])  # fmt: skip
    width = max(len(r) for r in rows)
    rows = [r[:-2] + ["-"] * (width - len(r)) + r[-2:] for r in rows]
    head = ["cell", fast, *(f"anchor {i + 1}" for i in range(width - 4)), f"gap, seed {base_seed}", "gap, seed mean"]  # fmt: skip
    lines = [
        f"protocol seeds {base_seed} (the store's) and {' '.join(map(str, seeds))}; accuracy: mean +/- std over seeds",
        format_table(head, rows),
        f"one measurement's seed-to-seed std: median {np.median([*spreads.values()]):.2f}, max {max(spreads.values()):.2f} over {len(spreads)} policies",
        f"std of {fast} - best anchor (by the seed mean) in a cell: median {np.median(diffs):.2f}, max {np.max(diffs):.2f} over {len(diffs)} cells",
        f"at the store's seed: {verdicts(gaps['store seed'])}",
        f"on the seed mean:    {verdicts(gaps['seed mean'])}",
        *variant_lines(arms, done, seeds),
    ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench", type=Path, required=True, help="a bench_fast_solve.py --out folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--variants", action="store_true", help="also the variants' stored answers")
    args = p.parse_args(argv)
    with SampleStore.open(args.bench / "ws" / STORE_NAME) as store:
        base_seed = int(store.spec.protocol.get("seed", 0))
    if base_seed in args.seeds:
        raise SystemExit(f"seed {base_seed} is the store's own: its measurements are the bench's")
    arms = arms_of(args.bench, args.variants)
    done = measure_all(args.bench, arms, args.seeds)
    text = report(arms, done, args.seeds, base_seed)
    (args.bench / "noise.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
