"""Where ONNX Runtime spends a compressed model's time: per-operator time, float base vs QDQ.

For a ``seernet compress`` output folder, runs the workspace's float base model and the
folder's ``model.qdq.onnx`` in ONNX Runtime (1 intra-op thread, all graph optimizations,
as ``compress`` times them) with ORT's profiler on, and prints the microseconds per
inference each operator type took (summed over its nodes), the nodes' total and the median
wall time per inference. The QDQ model runs many more, smaller nodes than the float one;
this says how much of its time is convolution and how much is the quantize / dequantize /
clip traffic around it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_ort_ops.py \\
        --workdir seernet-run --compressed seernet-run/compressed/flops-15.51M_mixed --batch 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from seernet.compression.ort_runtime import float_onnx, random_input, session
from seernet.steps.context import RunContext
from seernet.tables import format_table
from seernet.workspace.folder import Workspace


def op_times(trace: list[dict], runs: int) -> dict[str, float]:
    """Microseconds per inference by operator type, from an ORT profile's node events."""
    out: dict[str, float] = defaultdict(float)
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            out[event["args"]["op_name"]] += event["dur"] / runs
    return dict(out)


def profile(model: bytes | Path, x: np.ndarray, runs: int, warmup: int) -> tuple[dict, float]:
    """(µs per inference by op type over ``runs`` profiled runs, median wall µs per run)."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = session(model, threads=1, profile_prefix=f"{tmp}/ort")
        name = sess.get_inputs()[0].name
        walls = []
        for i in range(warmup + runs):
            start = time.perf_counter()
            sess.run(None, {name: x})
            if i >= warmup:
                walls.append((time.perf_counter() - start) * 1e6)
        trace = json.loads(Path(sess.end_profiling()).read_text())
    # the profile holds the warm-up runs too: scale to per inference over all of them
    return op_times(trace, warmup + runs), float(np.median(walls))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--compressed", type=Path, required=True, help="a compress output folder")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    args = p.parse_args(argv)
    ws = Workspace(args.workdir)
    ctx = RunContext(ws, ws.read(), torch.device("cpu"))
    shape = ctx.space.input_shape
    x = random_input(shape, args.batch)
    models = {"float base": float_onnx(ctx.model, shape),
              "QDQ": args.compressed / "model.qdq.onnx"}  # fmt: skip
    results = {k: profile(m, x, args.runs, args.warmup) for k, m in models.items()}
    ops = sorted({op for t, _ in results.values() for op in t},
                 key=lambda op: -max(t.get(op, 0.0) for t, _ in results.values()))  # fmt: skip
    rows = [[op, *(f"{t.get(op, 0.0):.1f}" for t, _ in results.values())] for op in ops]
    rows.append(["(nodes' total)", *(f"{sum(t.values()):.1f}" for t, _ in results.values())])
    rows.append(["(median wall per run)", *(f"{w:.1f}" for _, w in results.values())])
    print(f"µs per inference at batch {args.batch}, ONNX Runtime 1 thread, {args.runs} runs "
          f"after {args.warmup} (the profile averages all {args.runs + args.warmup})")  # fmt: skip
    print(format_table(["operator", *results], rows))


if __name__ == "__main__":
    main()
