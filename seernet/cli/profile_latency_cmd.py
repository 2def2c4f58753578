"""``seernet profile-latency``: LAP's per-layer latency lookup table for this workspace's space."""

from __future__ import annotations

import argparse

HELP = (
    "time every prunable layer at the channel counts the policy space allows (median of repeated "
    "runs) and store WORKDIR/latency.json, so 'seernet solve --latency 3ms' works; with --runtime torch "
    "latency is of the pruned float model (quantization is only simulated), with --runtime onnxruntime "
    "of the QDQ model on ONNX Runtime's integer CPU kernels (the same kernels at every bit-width 2..8)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.cli.common import (
        add_device_argument,
        add_json_argument,
        add_setting,
        add_workdir_argument,
    )
    from seernet.latency.table import ProfileSettings

    d = ProfileSettings()
    add_workdir_argument(p)
    add_setting(p, d, "batch_size", "inputs per timed pass")
    p.add_argument(
        "--threads", type=int, help="torch threads while timing (default: torch's current count)"
    )
    add_setting(p, d, "repeats", "timed runs per table entry; the median is kept")
    add_setting(p, d, "warmup", "untimed runs before each entry")
    add_setting(
        p,
        d,
        "model_runs",
        "timed runs of the whole model, for the overhead constant and the checks",
    )
    add_setting(
        p, d, "calibration", "random pruned whole models the scale of the layer sum is fitted on"
    )
    add_device_argument(p, "where the timings run (--runtime onnxruntime: the CPU when auto)")
    add_json_argument(
        p, "print a summary of the profiled table as JSON (and nothing else on stdout)"
    )
    add_setting(
        p,
        d,
        "runtime",
        "torch (float model in PyTorch) or onnxruntime (the QDQ export in ONNX Runtime, CPU; "
        "--threads then sets ORT's intra-op threads, default 1)",
    )
    add_setting(
        p,
        d,
        "qdq_residuals",
        "onnxruntime: the QDQ form to time, as 'seernet compress --qdq-residuals' writes it: float "
        "(the exact form) or int8 (residual-branch convs on integer kernels too)",
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from search.levels import Levels
    from seernet.cli.common import make_settings
    from seernet.compression.ort_runtime import check_runtime, require_onnxruntime
    from seernet.device import resolve_device
    from seernet.errors import UserError
    from seernet.latency.table import (
        ProfileSettings,
        at_top_bits,
        grid_points,
        measured_latencies_ms,
        profile,
        save_table,
    )
    from seernet.models import create_model
    from seernet.space.costs import CostModel
    from seernet.steps.context import RunContext
    from seernet.workspace.artifacts import TABLE_NAME
    from seernet.workspace.folder import Workspace

    if check_runtime(args.runtime) == "onnxruntime":
        require_onnxruntime()  # one clear line before any work
    settings = make_settings(
        ProfileSettings,
        args.batch_size,
        args.threads,
        args.repeats,
        args.warmup,
        args.model_runs,
        args.calibration,
        args.runtime,
        args.qdq_residuals,
    )
    device = resolve_device(
        "cpu" if args.runtime == "onnxruntime" and args.device == "auto" else args.device
    )
    ws = Workspace(args.workdir)
    ctx = RunContext(ws, ws.read(), device)
    space = ctx.space
    # The architecture alone sets the latency: no weights or data are loaded.
    arch = create_model(ctx.config.model, ctx.config.space["num_classes"], space.input_shape[1])
    grids = 2 if args.runtime == "onnxruntime" else 1  # ORT: QDQ and float kernels
    with tqdm(total=grids * grid_points(space), desc="profile", unit="entry", leave=False) as bar:
        table = profile(arch, space, ctx.config.model, settings, device, bar)
    costs = CostModel(space, latency=table)
    levels = Levels(space.levels())
    # Pruned models the table never saw whole (in ORT timed in turn with the unpruned one, and
    # a half-size model with mixed bits): how well the table predicts them.
    checks = {"smallest": levels.lower, "half": np.full(space.dim, 0.5)}
    if table.runtime == "onnxruntime":
        checks = {"unpruned": levels.upper, **{k: at_top_bits(x, space) for k, x in checks.items()},
                  "half, mixed bits": np.full(space.dim, 0.5)}  # fmt: skip
    policies = [space.decode(x) for x in checks.values()]
    measured = measured_latencies_ms(arch, space, policies, table, runs=settings.model_runs)
    for name, policy, ms in zip(checks, policies, measured, strict=True):
        table.checks[name] = {"predicted_ms": costs.of_policy(policy)["latency"], "measured_ms": ms}
    if table.checks["smallest"]["predicted_ms"] <= 0:
        raise UserError(
            "the timings are too noisy (the smallest model is predicted to take no time): "
            "rerun with more --repeats and --warmup on a quieter machine"
        )
    save_table(ws.path(TABLE_NAME), table)
    if args.json:
        from seernet.cli.common import print_json

        print_json(summary(table, ws.path(TABLE_NAME)))
    else:
        print(render(table, ws.path(TABLE_NAME)))
    return 0


def summary(table, path) -> dict:
    """``--json``: where the table went, how it was measured, and how well it predicts."""
    keys = ("device", "runtime", "threads", "batch_size", "repeats", "full_model_ms", "scale",
            "overhead_ms", "lowbit_ms", "lowbit_ms_per_element", "align_ms", "align_ms_per_element", "checks", "seconds")  # fmt: skip
    return {"path": str(path), "layers": len(table.layers), **{k: getattr(table, k) for k in keys}}


def render(table, path) -> str:
    """Summary of a freshly profiled table."""
    from seernet.tables import format_table

    ort = table.runtime == "onnxruntime"
    checks = {k: c for k, c in table.checks.items() if "predicted_ms" in c}
    rows = [[name, f"{c['predicted_ms']:.3f}", f"{c['measured_ms']:.3f}",
             f"{100 * (c['predicted_ms'] / c['measured_ms'] - 1):+.1f}%"] for name, c in checks.items()]  # fmt: skip
    if not ort:
        ms = f"{table.full_model_ms:.3f}"
        rows.insert(0, ["unpruned", ms, ms, "+0.0% (by construction)"])
    runtime = (
        f"onnxruntime {table.runtime_version} (QDQ model)"
        if ort
        else f"torch {table.torch_version}"
    )
    formula = f"prediction = {table.scale:.3f} x sum of layers {table.overhead_ms:+.3f} ms"
    if ort:
        per_element = table.align_ms_per_element
        align = ", ".join(f"{v * 1e3:.1f} us (+ {per_element.get(m, 0.0) * 1e6:.3f} ns per element)"
                          f" per group off x{m}" for m, v in table.align_ms.items())  # fmt: skip
        formula += (f" + {table.lowbit_ms * 1e3:.2f} us per input below 8 bits "
                    f"(+ {table.lowbit_ms_per_element * 1e6:.3f} ns per element) + {align}")  # fmt: skip
    fit = table.checks.get("calibration")
    lines = [
        f"device {table.device}, {runtime}, {table.threads} thread(s), batch {table.batch_size}",
        f"{len(table.layers)} layers, median of {table.repeats} runs per entry; {formula}; "
        f"profiled in {table.seconds:.1f} s",
    ]
    if fit:
        lines.append(f"fitted on {fit['models']:.0f} whole models: |error| median "
                     f"{fit['median_abs_error_pct']:.1f}%, max {fit['max_abs_error_pct']:.1f}%")  # fmt: skip
    header = [
        "model (QDQ in ORT)" if ort else "model (float)",
        "predicted ms",
        "measured ms",
        "error",
    ]
    return "\n".join([*lines, format_table(header, rows), f"wrote {path}"])
