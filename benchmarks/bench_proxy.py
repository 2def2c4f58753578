"""How faithful is the fast evaluation protocol? Kendall tau of proxy vs long fine-tune.

For policies spread over the cost range, measure the proxy accuracy (adaptive BN + S
QAT steps, with the step sizes frozen or learned: ``--lsq off,on``) for several S, and
the accuracy after a long QAT fine-tune from the same starting point. Prints tau / rho per S and seconds per sample. Results
are cached per policy in ``--out`` so an interrupted run resumes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_proxy.py --policies 20

Proxy with frozen vs learned (LSQ) step sizes, against compress's own fine-tune length
(250 steps = 0.58 epoch, step sizes learned as compress does); two slices in parallel:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_proxy.py --policies 20 --limit 8 \
        --steps 20 --lsq off,on --long-epochs 0.58 --out benchmarks/out/proxy-lsq.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from search.levels import Levels
from search.sampler import random_warmup
from seernet.compression.protocol import Protocol, build_compressed, evaluate_policy, finetune_
from seernet.data.train import accuracy
from seernet.space.policy import SpaceChoices
from seernet.steps.compress import CompressSettings
from seernet.steps.context import RunContext, record_space
from seernet.tables import format_table
from seernet.workspace.folder import Workspace


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="benchmarks/out/proxy-ws")
    p.add_argument("--policies", type=int, default=20)
    p.add_argument("--steps", default="0,10,20,50", help="proxy fine-tune steps to compare")
    p.add_argument("--long-epochs", type=float, default=1.0)
    p.add_argument("--out", default="benchmarks/out/proxy.json")
    p.add_argument(
        "--limit",
        type=int,
        help="report only this many of the policies (shuffled order, so any prefix spans the cost range)",
    )
    p.add_argument(
        "--slice",
        help="START:STOP of the shuffled policies to measure in this process (parallel runs, each with its own --out)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--lsq",
        default="off",
        help="proxy variants to measure: off, on, or off,on (LSQ in the S steps)",
    )
    p.add_argument("--long-lsq", action=argparse.BooleanOptionalAction, default=CompressSettings().lsq,
                   help="learn step sizes in the long fine-tune (default: as 'compress' does, %(default)s)")  # fmt: skip
    return p.parse_args()


def open_context(workdir: str) -> RunContext:
    ws = Workspace(workdir)
    ctx = RunContext(ws, ws.open({}), torch.device("cpu"))
    if not ctx.config.space:
        record_space(ctx, SpaceChoices())
    return ctx


def policies(ctx: RunContext, n: int, seed: int) -> np.ndarray:
    """``n`` random policies stratified over FLOPs (small and large models both seen)."""
    flops = ctx.costs.flops
    cost = lambda x: flops(torch.as_tensor(np.asarray(x)).reshape(-1, ctx.space.dim)).numpy()  # noqa: E731
    return random_warmup(Levels(ctx.space.levels()), n, np.random.default_rng(seed), cost)


def long_finetune(
    ctx: RunContext, policy, epochs: float, seed: int, lsq: bool
) -> tuple[float, float]:
    """Val accuracy after ``epochs`` of QAT from the protocol's starting point."""
    start = time.perf_counter()
    protocol = Protocol(seed=seed, lsq=lsq)
    model = build_compressed(ctx.model, ctx.space, policy, ctx.splits, protocol, ctx.device)
    steps = int(epochs * len(ctx.splits.train) / protocol.batch_size)
    finetune_(model, ctx.splits, steps, protocol, ctx.device)
    return accuracy(model, ctx.splits.val, ctx.device), time.perf_counter() - start


def variant_keys(steps: list[int], lsq: list[bool]) -> list[str]:
    """Cache keys of the proxy variants: "S" (step sizes frozen) and "S+lsq" (learned)."""
    frozen = [str(s) for s in steps if False in lsq or s == 0]  # at S = 0 nothing is learned
    return frozen + [f"{s}+lsq" for s in steps if True in lsq and s > 0]


def measure(
    ctx: RunContext, x: np.ndarray, keys: list[str], epochs: float, seed: int, long_lsq: bool
) -> dict:
    policy = ctx.space.decode(x)
    row = {"flops": ctx.costs.of_policy(policy)["flops"], "proxy": {}, "seconds": {}}
    for key in keys:
        s, lsq = int(key.split("+")[0]), key.endswith("+lsq")
        protocol = Protocol(finetune_steps=s, seed=seed, lsq=lsq)
        acc, sec = evaluate_policy(ctx.model, ctx.space, policy, ctx.splits, protocol, ctx.device)
        row["proxy"][key], row["seconds"][key] = acc, sec
    row["long"], row["long_seconds"] = long_finetune(ctx, policy, epochs, seed, long_lsq)
    return row


def report(rows: list[dict], keys: list[str]) -> str:
    long = np.array([r["long"] for r in rows])
    table = []
    for s in keys:
        proxy = np.array([r["proxy"][str(s)] for r in rows])
        table.append([s, f"{kendalltau(proxy, long)[0]:.3f}", f"{spearmanr(proxy, long)[0]:.3f}",
                      f"{proxy.min():.1f}-{proxy.max():.1f}", f"{np.median([r['seconds'][str(s)] for r in rows]):.2f}"])  # fmt: skip
    head = f"{len(rows)} policies; long fine-tune accuracy {long.min():.1f}-{long.max():.1f}% " \
           f"(median {np.median([r['long_seconds'] for r in rows]):.0f} s each)"  # fmt: skip
    return (
        head
        + "\n"
        + format_table(
            ["S (steps)", "Kendall tau", "Spearman rho", "proxy acc %", "s/sample"], table
        )
    )


def load_caches(out: Path) -> dict:
    """Every cached measurement in ``out``'s folder (one file per parallel slice)."""
    cache: dict = {}
    for f in sorted(out.parent.glob("proxy*.json")):
        cache.update(json.loads(f.read_text()))
    return cache


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    steps = [int(s) for s in args.steps.split(",")]
    lsq = [{"off": False, "on": True}[v] for v in args.lsq.split(",")]
    keys = variant_keys(steps, lsq)
    ctx = open_context(args.workdir)
    out = Path(args.out)
    cache = load_caches(out)
    xs = policies(ctx, args.policies, args.seed)
    xs = xs[np.random.default_rng(args.seed).permutation(len(xs))][: args.limit]
    start, stop = (int(v) for v in args.slice.split(":")) if args.slice else (0, len(xs))
    mine = json.loads(out.read_text()) if out.is_file() else {}
    for i in range(start, min(stop, len(xs))):
        key = ",".join(f"{v:.6f}" for v in xs[i])
        if key not in cache or set(cache[key]["proxy"]) != set(keys):
            cache[key] = mine[key] = measure(
                ctx, xs[i], keys, args.long_epochs, args.seed, args.long_lsq
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(mine, indent=1))
            print(
                f"policy {i + 1}/{len(xs)}: long {cache[key]['long']:.2f}%  proxy {cache[key]['proxy']}",
                flush=True,
            )
    cache = load_caches(out)  # parallel slices may have finished meanwhile
    rows = [cache[k] for k in (",".join(f"{v:.6f}" for v in x) for x in xs) if k in cache]
    print(
        f"long fine-tune: {args.long_epochs} epoch(s), step sizes {'learned (LSQ)' if args.long_lsq else 'frozen'}"
    )
    print(report(rows, keys))


if __name__ == "__main__":
    main()
