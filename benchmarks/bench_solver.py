"""Search methods on the same predictor: barrier ascent vs a DEAP GA vs random search.

For 8 FLOPs budgets (mixed precision, BitOPs = 16 x FLOPs) the three methods maximize
the same predictor's mean. The GA gets 30x the solver's time; random search draws
10k feasible policies. Spaces:

- ``resnet20``: the default model's space with the predictor fitted by
  ``seernet fit-predictor`` in ``--workdir`` (real measured samples);
- ``mobilenet_v2``: torchvision MobileNetV2 at 224x224 (300M MACs) with an MLP
  ensemble fitted to a synthetic smooth accuracy surface (no ImageNet here): the
  comparison is between search methods, so any fitted predictor serves.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_solver.py --workdir benchmarks/out/ws-default
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from predictor.ensemble import MLPEnsemble
from search.baselines import genetic_search, random_search
from search.levels import Levels
from search.solver import barrier_ascent
from seernet.models import create_model
from seernet.space.costs import CostModel
from seernet.space.graph import build_space
from seernet.tables import format_table
from seernet.units import format_count


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--workdir", default="benchmarks/out/ws-default", help="workspace with a fitted predictor"
    )
    p.add_argument("--budgets", type=int, default=8)
    p.add_argument(
        "--ga-factor", type=float, default=30.0, help="GA time as a multiple of the solver's"
    )
    p.add_argument("--spaces", default="resnet20,mobilenet_v2")
    return p.parse_args()


def default_space(workdir: str):
    """The default workspace's space, costs and fitted predictor."""
    from seernet.steps.context import RunContext
    from seernet.steps.solve import load_predictor
    from seernet.workspace.folder import Workspace

    ws = Workspace(workdir)
    ctx = RunContext(ws, ws.read(), torch.device("cpu"))
    return ctx.space, ctx.costs, load_predictor(ctx)


def mobilenet_space(seed: int = 0):
    """MobileNetV2 at 224x224 with a predictor fitted to a synthetic accuracy surface."""
    space = build_space(create_model("mobilenet_v2", 1000, 3), (1, 3, 224, 224))
    costs = CostModel(space)
    rng = np.random.default_rng(seed)
    X = Levels(space.levels()).random(400, rng)
    xt = torch.as_tensor(X)
    rel_bitops = (costs.bitops(xt) / costs.unpruned()["bitops"]).numpy()
    weights = rng.uniform(0.5, 1.5, space.dim)  # layers matter unequally
    y = (
        72
        + 4 * np.log(rel_bitops + 1e-3) / 7
        - 3 * ((1 - X) ** 2 * weights).mean(1)
        + rng.normal(0, 0.2, len(X))
    )
    return space, costs, MLPEnsemble(random_state=seed).fit(X, y)


def compare(name: str, space, costs, predictor, n_budgets: int, ga_factor: float) -> list[list]:
    levels = Levels(space.levels())
    full = costs.unpruned()["flops"]
    fns = costs.functions()
    rows = []
    for frac in np.linspace(0.2, 0.9, n_budgets):
        budgets = {"flops": frac * full, "bitops": 16 * frac * full}
        cf = {k: fns[k] for k in budgets}
        t = time.perf_counter()
        s = barrier_ascent(predictor.mean_std_torch, cf, budgets, levels)
        s_sec = time.perf_counter() - t
        g = genetic_search(
            predictor.mean_std_torch,
            cf,
            budgets,
            levels,
            seconds=ga_factor * s_sec,
            generations=10**6,
        )
        r = random_search(predictor.mean_std_torch, cf, budgets, levels, n=10000)
        rows.append([name, format_count(budgets["flops"]), f"{s.mean:.3f}", f"{s_sec:.3f}",
                     f"{g.mean:.3f}", f"{g.seconds:.2f}", f"{r.mean:.3f}", f"{r.seconds:.2f}",
                     "yes" if s.mean >= g.mean else "no"])  # fmt: skip
    return rows


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.spaces.split(","):
        space, costs, predictor = (
            default_space(args.workdir) if name == "resnet20" else mobilenet_space()
        )
        print(
            f"{name}: D={space.dim}, unpruned {format_count(costs.unpruned()['flops'])} FLOPs",
            flush=True,
        )
        rows += compare(name, space, costs, predictor, args.budgets, args.ga_factor)
    print(format_table(["space", "FLOPs budget", "solver acc", "solver s", "GA acc", "GA s",
                        "random acc", "random s", "solver >= GA"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
