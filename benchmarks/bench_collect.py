"""Collection throughput and the cost of simulated quantization.

1. Samples per minute of the default evaluation protocol on the default model
   (fresh measurements of a few random policies, one process, ``--threads`` threads).
2. Forward time of the fake-quantized pruned model relative to the float forward of
   the same pruned model (eval mode, batch 256; target <= 1.3x).

    .venv/bin/python benchmarks/bench_collect.py --policies 5 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from search.levels import Levels
from seernet.compression.protocol import Protocol, build_compressed, evaluate_policy
from seernet.compression.quant import quant_layers
from seernet.space.policy import SpaceChoices
from seernet.steps.context import RunContext, record_space
from seernet.tables import format_table
from seernet.workspace.folder import Workspace


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="benchmarks/out/collect-ws")
    p.add_argument("--policies", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def forward_ms(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median forward time in ms (after warm-up), no autograd."""
    with torch.no_grad():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def overhead(ctx: RunContext, policy, batch: int, repeats: int) -> tuple[float, float]:
    """(fake-quant ms, float ms) for the same pruned model."""
    model = build_compressed(
        ctx.model, ctx.space, policy, ctx.splits, Protocol(), ctx.device
    ).eval()
    x = torch.randn(batch, *ctx.space.input_shape[1:])
    quant_ms = forward_ms(model, x, repeats)
    bits = {name: (m.w_bits, m.a_bits) for name, m in quant_layers(model).items()}
    for m in quant_layers(model).values():
        m.set_bits(None, None)  # the same wrappers, quantization off
    float_ms = forward_ms(model, x, repeats)
    for name, m in quant_layers(model).items():
        m.set_bits(*bits[name])
    return quant_ms, float_ms


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    ws = Workspace(args.workdir)
    ctx = RunContext(ws, ws.open({}), torch.device("cpu"))
    if not ctx.config.space:
        record_space(ctx, SpaceChoices())
    xs = Levels(ctx.space.levels()).random(args.policies, np.random.default_rng(args.seed))
    rows, seconds, ratios = [], [], []
    for i, x in enumerate(xs):
        policy = ctx.space.decode(x)
        acc, sec = evaluate_policy(ctx.model, ctx.space, policy, ctx.splits, Protocol(), ctx.device)
        q_ms, f_ms = overhead(ctx, policy, args.batch, args.repeats)
        seconds.append(sec)
        ratios.append(q_ms / f_ms)
        flops = ctx.costs.of_policy(policy)["flops"] / 1e6
        rows.append(
            [
                i,
                f"{flops:.2f}M",
                f"{acc:.2f}",
                f"{sec:.2f}",
                f"{f_ms:.1f}",
                f"{q_ms:.1f}",
                f"{q_ms / f_ms:.2f}",
            ]
        )
    print(
        f"default protocol {Protocol().to_json()}, torch threads {args.threads}, batch {args.batch}"
    )
    print(
        format_table(
            ["policy", "FLOPs", "val acc %", "eval s", "float ms", "fake-quant ms", "ratio"], rows
        )
    )
    print(
        f"samples per minute: {60 / statistics.median(seconds):.1f} (median {statistics.median(seconds):.2f} s/sample)"
    )
    print(f"fake-quant / float forward: median {statistics.median(ratios):.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
