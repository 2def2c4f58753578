"""End to end: seernet's policy vs uniform pruning vs an L1-norm global threshold.

At 30%, 50% and 70% of the base model's FLOPs, in two precisions:

- ``8bit``: every layer 8-bit; the three methods only decide the pruning;
- ``mixed``: BitOPs budget = 16 x the FLOPs budget (uniform 4-bit equivalent). seernet
  searches per-layer bits; the baselines use uniform 4-bit weights and activations (first
  conv and classifier stay 8-bit in every policy, so the baselines exceed that BitOPs
  budget slightly: an advantage to them, shown in the table).

Baselines: ``uniform`` keeps the same fraction of every channel group (the largest
fraction on the space's levels that fits the FLOPs budget); ``l1-global`` ranks every
channel of every group by the raw L1 norm of its filters (Torch-Pruning group magnitude,
mean over coupled layers, no per-layer normalization) and removes the globally smallest
until the budget holds (kept counts snapped up to the space's levels).

Every policy is compressed with identical settings (``seernet compress`` defaults: 250 QAT
steps, seed 0, L1 channel selection inside a group) and scored on the test set. Latency:
each policy's pruned float model vs the base model on the CPU, batch 1 and 64, median of
``--latency-runs`` runs, measured in one pass after all fine-tuning.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_end_to_end.py   # resumable
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import torch_pruning as tp

from seernet.compress import CompressSettings, compress
from seernet.context import RunContext
from seernet.latency import measure_latency
from seernet.prune import prune_model
from seernet.solve import (
    BudgetSet,
    bits_mask,
    load_predictor,
    policy_document,
    solve_one,
    write_json,
)
from seernet.space import Policy
from seernet.space_graph import named_groups
from seernet.store import SampleStore
from seernet.tables import format_table
from seernet.train import accuracy
from seernet.workspace import Workspace

FRACTIONS = (0.3, 0.5, 0.7)
MODES = ("8bit", "mixed")
METHODS = ("seernet", "uniform", "l1-global")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="benchmarks/out/ws-default", help="workspace with samples and a predictor")
    p.add_argument("--out", default="benchmarks/out/e2e")
    p.add_argument("--steps", type=int, help="QAT steps per model (default: compress's default)")
    p.add_argument("--latency-runs", type=int, default=50)
    p.add_argument("--dry-run", action="store_true", help="print the policies' costs, compress nothing")
    p.add_argument("--more-samples", help="comma-separated sample stores of the same space: refit the new "
                   "workspace's predictor on them together with the source's samples")  # fmt: skip
    p.add_argument("--reuse", help="an earlier output folder: copy its baseline models (same policy, same settings)")
    p.add_argument("--only", help="comma-separated run names to (re)do, e.g. 50%%-mixed-seernet")
    return p.parse_args()


def workspace(args: argparse.Namespace) -> RunContext:
    """A copy of the source workspace (its samples and predictor), so outputs stay apart."""
    ws_dir = Path(args.out) / "ws"
    if not ws_dir.exists():
        ws_dir.mkdir(parents=True)
        for name in ("seernet.json", "samples.h5", "predictor.pt"):
            shutil.copy2(Path(args.source) / name, ws_dir / name)
        if args.more_samples:
            refit_predictor(ws_dir, [ws_dir / "samples.h5", *map(Path, args.more_samples.split(","))])
    ws = Workspace(ws_dir)
    return RunContext(ws, ws.read(), torch.device("cpu"))


def refit_predictor(ws_dir: Path, stores: list[Path]) -> None:
    """The workspace's predictor, fitted on every sample of ``stores`` (one policy space)."""
    from predictor.ensemble import MLPEnsemble

    opened = [SampleStore.open(p) for p in stores]
    if len({st.spec.fingerprint for st in opened}) != 1:
        raise SystemExit("--more-samples: the stores belong to different policy spaces")
    X = np.concatenate([st.encoded for st in opened])
    y = np.concatenate([st.accuracy for st in opened])
    meta = {"space_fingerprint": opened[0].spec.fingerprint, "input_dim": int(X.shape[1]), "n_samples": int(len(y)), "seed": 0}
    MLPEnsemble(random_state=0).fit(X, y).save(ws_dir / "predictor.pt", meta)
    print(f"predictor refitted on {len(y)} samples of {len(stores)} stores")


def reuse_baselines(ctx: RunContext, runs: list, earlier: Path) -> None:
    """Copy compressed baselines of an earlier run whose policy is the same (nothing to retrain)."""
    for name, _, _, method, doc in runs:
        old_doc, old_out = earlier / "ws" / "policies" / f"{name}.json", earlier / "ws" / "compressed" / name
        out = ctx.ws.path("compressed", name)
        if method == "seernet" or out.exists() or not (old_out / "metrics.json").exists():
            continue
        if json.loads(old_doc.read_text())["policy"] == doc["policy"]:
            write_json(ctx.ws.path("policies", f"{name}.json"), doc)
            shutil.copytree(old_out, out)


# --- policies --------------------------------------------------------------------------------
def with_bits(ctx: RunContext, channels: dict[str, int], bits: int) -> Policy:
    return Policy(channels, ctx.space.full_policy(bits).bits)


def uniform_policy(ctx: RunContext, budget: float, bits: int) -> Policy:
    """The largest common keep fraction (on the levels) whose FLOPs fit ``budget``."""
    groups = ctx.space.groups
    for frac in sorted({k / g.channels for g in groups for k in g.keep}, reverse=True):
        channels = {g.name: min(g.keep, key=lambda k, g=g, f=frac: abs(k - f * g.channels)) for g in groups}
        policy = with_bits(ctx, channels, bits)
        if ctx.costs.of_policy(policy)["flops"] <= budget:
            return policy
    raise RuntimeError(f"no uniform policy fits {budget}")


def l1_scores(ctx: RunContext) -> dict[str, np.ndarray]:
    """Raw L1 filter norms per channel of every group (mean over the group's coupled layers)."""
    imp = tp.importance.GroupMagnitudeImportance(p=1, group_reduction="mean", normalizer=None)
    _, groups = named_groups(copy.deepcopy(ctx.model).cpu().eval(), ctx.space.input_shape)
    return {name: imp(group).detach().numpy() for name, group in groups}


def l1_global_policy(ctx: RunContext, scores: dict[str, np.ndarray], budget: float, bits: int) -> Policy:
    """Smallest global L1 threshold whose snapped policy fits ``budget`` (bisection)."""
    groups = {g.name: g for g in ctx.space.groups}

    def at(t: float) -> Policy:
        channels = {}
        for name, s in scores.items():
            keep = int((s > t).sum())
            channels[name] = next((k for k in groups[name].keep if k >= keep), groups[name].keep[-1])
        return with_bits(ctx, channels, bits)

    thresholds = np.unique(np.concatenate([[-np.inf], *scores.values()]))
    lo, hi = 0, len(thresholds) - 1  # FLOPs fall as the threshold rises
    while lo < hi:
        mid = (lo + hi) // 2
        if ctx.costs.of_policy(at(thresholds[mid]))["flops"] <= budget:
            hi = mid
        else:
            lo = mid + 1
    return at(thresholds[lo])


def seernet_policy(ctx: RunContext, predictor, budgets: dict[str, float], bits: int | None) -> dict:  # noqa: ANN001
    fixed, values = bits_mask(ctx, bits)
    bset = BudgetSet(budgets, "seernet", {})
    return policy_document(ctx, bset, solve_one(ctx, predictor, bset, fixed, values), "mixed" if bits is None else str(bits))


def plan(ctx: RunContext) -> list[tuple[str, float, str, str, dict]]:
    """(run name, FLOPs fraction, mode, method, policy document) for every run."""
    full = ctx.costs.unpruned()["flops"]
    predictor, scores, runs = load_predictor(ctx), l1_scores(ctx), []
    for mode in MODES:
        bits = 8 if mode == "8bit" else 4
        for frac in FRACTIONS:
            budget = frac * full
            budgets = {"flops": budget} | ({"bitops": 16 * budget} if mode == "mixed" else {})
            docs = {
                "seernet": seernet_policy(ctx, predictor, budgets, 8 if mode == "8bit" else None),
                "uniform": baseline_doc(ctx, uniform_policy(ctx, budget, bits)),
                "l1-global": baseline_doc(ctx, l1_global_policy(ctx, scores, budget, bits)),
            }
            for method, doc in docs.items():
                name = f"{round(100 * frac)}%-{mode}-{method}"
                runs.append((name, frac, mode, method, doc | {"name": name, "budgets": budgets}))
    return runs


def baseline_doc(ctx: RunContext, policy: Policy) -> dict:
    return {"space_fingerprint": ctx.space.fingerprint, "policy": policy.to_json(),
            "costs": ctx.costs.of_policy(policy), "encoded": [float(v) for v in ctx.space.encode(policy)]}  # fmt: skip


# --- measuring -------------------------------------------------------------------------------
def run_all(ctx: RunContext, runs: list, settings: CompressSettings, only: set[str] | None) -> None:
    for name, _, _, _, doc in runs:
        metrics = ctx.ws.path("compressed", name, "metrics.json")
        if metrics.exists() and not (only and name in only):
            continue
        if only and name not in only:
            continue
        print(f"=== {name}", flush=True)
        write_json(ctx.ws.path("policies", f"{name}.json"), doc)
        compress(ctx, doc, Policy.from_json(doc["policy"]), settings, source=ctx.ws.path("policies", f"{name}.json"))


def latencies(ctx: RunContext, runs: list, n_runs: int) -> dict[str, dict[str, float]]:
    """Median ms at batch 1 and 64 of every pruned float model and of the base model."""
    shape = ctx.space.input_shape
    models = {"base": ctx.model} | {
        name: prune_model(ctx.model, ctx.space, Policy.from_json(doc["policy"])) for name, *_, doc in runs
    }
    return {name: {str(b): measure_latency(m, shape, b, n_runs)["median_ms"] for b in (1, 64)}
            for name, m in models.items()}  # fmt: skip


def main() -> None:
    args = parse_args()
    ctx = workspace(args)
    runs = plan(ctx)
    if args.dry_run:
        full = ctx.costs.unpruned()
        print(format_table(["run", "FLOPs %", "BitOPs / (16 x FLOPs budget)", "params"],
                           [[n, f"{100 * d['costs']['flops'] / full['flops']:.1f}",
                             f"{d['costs']['bitops'] / (16 * f * full['flops']):.3f}", f"{d['costs']['params']:.0f}"]
                            for n, f, _, _, d in runs]))  # fmt: skip
        return
    settings = CompressSettings(steps=args.steps, latency_runs=5)  # latency is measured below, in one pass
    if args.reuse:
        reuse_baselines(ctx, runs, Path(args.reuse))
    run_all(ctx, runs, settings, set(args.only.split(",")) if args.only else None)
    base_test = accuracy(ctx.model, ctx.splits.test, ctx.device)
    lat = latencies(ctx, runs, args.latency_runs)
    full = ctx.costs.unpruned()
    results = []
    for name, frac, mode, method, _ in runs:
        m = json.loads(ctx.ws.path("compressed", name, "metrics.json").read_text())
        speed = {b: lat["base"][b] / lat[name][b] for b in ("1", "64")}
        reduction = full["flops"] / m["costs"]["flops"]
        results.append({"name": name, "fraction": frac, "mode": mode, "method": method, "costs": m["costs"],
                        "test_before": m["accuracy"]["before_finetune"]["test"],
                        "test": m["accuracy"]["after_finetune"]["test"], "val": m["accuracy"]["after_finetune"]["val"],
                        "latency_ms": lat[name], "speedup": speed, "flops_reduction": reduction,
                        "predicted": (m.get("predicted") or {}).get("mean")})  # fmt: skip
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps({"base_test": base_test, "base_latency_ms": lat["base"],
                                                  "threads": torch.get_num_threads(), "runs": results}, indent=2))  # fmt: skip
    print_tables(results, base_test, lat["base"])
    plot(results, base_test, out / "end_to_end.png")
    print(f"plot: {out / 'end_to_end.png'}; data: {out / 'results.json'}")


def print_tables(results: list[dict], base_test: float, base_lat: dict[str, float]) -> None:
    rows = []
    for r in results:
        c = r["costs"]
        rows.append([r["name"], f"{c['flops'] / 1e6:.2f}M", f"{c['bitops'] / 1e9:.2f}G", f"{r['test_before']:.2f}",
                     f"{r['test']:.2f}", f"{r['test'] - base_test:+.2f}",
                     "" if r["predicted"] is None else f"{r['predicted']:.2f}"])  # fmt: skip
    print(f"base model: test {base_test:.2f}%, {torch.get_num_threads()} thread(s)")
    print(format_table(["run", "FLOPs", "BitOPs", "test before QAT", "test after QAT", "vs base", "predicted (val)"], rows))
    wins = []
    for mode in MODES:
        for frac in FRACTIONS:
            acc = {r["method"]: r["test"] for r in results if r["mode"] == mode and r["fraction"] == frac}
            best_base = max(acc["uniform"], acc["l1-global"])
            wins.append([f"{round(100 * frac)}%", mode, f"{acc['seernet']:.2f}", f"{acc['uniform']:.2f}",
                         f"{acc['l1-global']:.2f}", f"{acc['seernet'] - best_base:+.2f}",
                         "yes" if acc["seernet"] >= best_base else "no"])  # fmt: skip
    print(format_table(["FLOPs", "bits", "seernet", "uniform", "l1-global", "seernet - best baseline", ">= both"], wins))
    lrows = [[r["name"], f"{r['latency_ms']['1']:.3f}", f"{r['speedup']['1']:.2f}x", f"{r['latency_ms']['64']:.2f}",
              f"{r['speedup']['64']:.2f}x", f"{r['flops_reduction']:.2f}x",
              f"{r['speedup']['1'] / r['flops_reduction']:.2f}", f"{r['speedup']['64'] / r['flops_reduction']:.2f}"]
             for r in results if r["mode"] == "8bit"]  # fmt: skip
    print(f"latency of the pruned float models (base: {base_lat['1']:.3f} ms at batch 1, {base_lat['64']:.2f} ms at 64)")
    print(format_table(["run", "ms b=1", "speed-up b=1", "ms b=64", "speed-up b=64", "FLOPs reduction",
                        "speed-up/reduction b=1", "b=64"], lrows))  # fmt: skip


def plot(results: list[dict], base_test: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, mode in zip(axes, MODES, strict=True):
        for method in METHODS:
            rs = sorted((r for r in results if r["mode"] == mode and r["method"] == method), key=lambda r: r["fraction"])
            ax.plot([100 * r["fraction"] for r in rs], [r["test"] for r in rs], marker="o", label=method)
        ax.axhline(base_test, color="grey", linestyle="--", label="base (float)")
        ax.set(title=f"{mode}", xlabel="FLOPs budget (% of base)", ylabel="test accuracy (%)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
