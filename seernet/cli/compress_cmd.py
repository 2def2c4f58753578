"""``seernet compress``: prune + quantize + fine-tune one solved policy, then export it."""

from __future__ import annotations

import argparse

HELP = ("build the compressed model of a policy file (prune, quantize, QAT fine-tune), report val/test "
        "accuracy, costs and CPU latency (torch, and ONNX Runtime when installed), and export it to "
        "WORKDIR/compressed/<name>/ (TorchScript, ONNX, QDQ ONNX for ONNX Runtime's integer kernels, packed codes)")  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.steps.compress import DEFAULT_STEPS, CompressSettings

    d = CompressSettings()
    p.add_argument(
        "policy", help="policy file written by 'seernet solve' (WORKDIR/policies/<name>.json)"
    )
    from seernet.cli.common import add_workdir_argument

    add_workdir_argument(p)
    p.add_argument(
        "--epochs", type=float, help="QAT fine-tuning epochs, fractions allowed (default: --steps)"
    )
    p.add_argument("--steps", type=int, help=f"QAT fine-tuning steps (default: {DEFAULT_STEPS})")
    p.add_argument(
        "--lr",
        type=float,
        default=d.lr,
        help="peak learning rate of the cosine schedule (default: %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    p.add_argument("--criterion", default=d.criterion,
                   help="channel importance used to prune; use the one 'collect' used (default: %(default)s)")  # fmt: skip
    p.add_argument("--distill", type=float, default=d.distill,
                   help="weight in 0..1 of the KL to the float base model's softened logits in the fine-tuning "
                        "loss, the rest label cross-entropy; 0 turns distillation off (default: %(default)s)")  # fmt: skip
    p.add_argument(
        "--temperature",
        type=float,
        default=d.temperature,
        help="temperature softening both logits in the distillation term (default: %(default)s)",
    )
    p.add_argument("--lsq", action=argparse.BooleanOptionalAction, default=d.lsq,
                   help="learn the weight and activation step sizes while fine-tuning (LSQ) (default: %(default)s)")  # fmt: skip
    p.add_argument(
        "--latency-runs",
        type=int,
        default=d.latency_runs,
        help="timed runs per latency figure (default: %(default)s)",
    )
    p.add_argument("--ort-threads", type=int, default=d.ort_threads,
                   help="ONNX Runtime intra-op threads for its latency figures (default: %(default)s)")  # fmt: skip
    p.add_argument("--qdq-residuals", default=d.qdq_residuals,
                   help="int8: model.qdq.onnx also quantizes residual-branch conv outputs at 8 bits, so ONNX "
                        "Runtime runs every conv on integer kernels (faster; an approximation, its top-1 agreement "
                        "with the simulation is reported); float: the exact form, those convs run in float "
                        "(default: %(default)s)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--json", action="store_true", help="print metrics.json only")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from seernet.compression.prune import make_criterion
    from seernet.device import resolve_device
    from seernet.errors import UserError
    from seernet.memory import check_run_fits
    from seernet.steps.compress import CompressSettings, compress, read_policy
    from seernet.steps.context import RunContext
    from seernet.workspace.folder import Workspace

    try:
        settings = CompressSettings(args.epochs, args.steps, args.lr, args.batch_size, seed=args.seed,
                                    criterion=args.criterion, latency_runs=args.latency_runs, lsq=args.lsq,
                                    distill=args.distill, temperature=args.temperature,
                                    ort_threads=args.ort_threads, qdq_residuals=args.qdq_residuals)  # fmt: skip
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    ws = Workspace(args.workdir)
    ctx = RunContext(ws, ws.read(), resolve_device(args.device))
    make_criterion(
        args.criterion
    )  # after the context: it registers the workspace's learned criteria
    path = Path(args.policy)
    doc, policy = read_policy(path, ctx.space)
    # The unpruned base model bounds the compressed one: refuse a batch it could not train on.
    check_run_fits(ctx.model, ctx.space.input_shape, ctx.device, train_batch=settings.batch_size)
    metrics = compress(ctx, doc, policy, settings, source=path)
    print(json.dumps(metrics, indent=2) if args.json else render(metrics))
    return 0


def render(m: dict) -> str:
    """Human-readable summary of one compressed model's metrics."""
    from seernet.steps.solve import format_cost
    from seernet.tables import format_table
    from seernet.units import format_bytes

    acc = m["accuracy"]
    accs = [
        [when, acc[k]["val"], acc[k]["test"]]
        for when, k in (("before QAT", "before_finetune"), ("after QAT", "after_finetune"))
    ]
    costs = [[k, format_cost(k, v), format_cost(k, m["unpruned"][k]), f"{100 * v / m['unpruned'][k]:.1f}%"]
             for k, v in m["costs"].items()]  # fmt: skip
    files = [[name, n, format_bytes(n)] for name, n in m["files"].items()]
    files.append(
        ["(base model, float32)", m["base_float_bytes"], format_bytes(m["base_float_bytes"])]
    )
    lat = m["latency"]
    times = [
        [name, *(v[str(b)]["median_ms"] for b in lat["batch_sizes"])]
        for name, v in lat["models"].items()
    ]
    return "\n".join([
        f"== {m['name']}: {m['finetune_steps']} QAT steps on {m['device']} ==",
        format_table(["", "val %", "test %"], accs), "",
        format_table(["cost", "compressed", "unpruned", "ratio"], costs), "",
        format_table(["file", "bytes", ""], files), "",
        format_table(["CPU latency, median ms", *(f"batch {b}" for b in lat["batch_sizes"])], times),
        f"(CPU, {lat['threads']} thread(s), median of {m['settings']['latency_runs']} runs)",
        *_render_ort(m.get("onnxruntime")),
        *(f"note: {n}" for n in m["notes"]),
        f"export check: max |diff| TorchScript {m['export_check']['torchscript_max_abs_diff']:.2g}, "
        f"packed {m['export_check']['packed_max_abs_diff']:.2g}",
        f"wrote {m['folder']} in {m['seconds']['total']:.0f} s",
    ])  # fmt: skip


def _render_ort(ort: dict | None) -> list[str]:
    """The ONNX Runtime lines of the summary (none when ORT was not measured)."""
    from seernet.tables import format_table

    if not ort:
        return []
    lat = ort["latency"]
    base = lat["models"]["base (float)"]
    rows = [[name, *(f"{v[str(b)]['median_ms']:.3f}" for b in lat["batch_sizes"]),
             *(f"{base[str(b)]['median_ms'] / v[str(b)]['median_ms']:.2f}x" for b in lat["batch_sizes"])]
            for name, v in lat["models"].items()]  # fmt: skip
    load = lat["load_average_1min"]
    return [
        "",
        format_table(
            [
                "ONNX Runtime CPU, median ms",
                *(f"batch {b}" for b in lat["batch_sizes"]),
                *(f"speed-up b{b}" for b in lat["batch_sizes"]),
            ],
            rows,
        ),  # fmt: skip
        f"(onnxruntime {lat['version']}, {lat['threads']} intra-op thread(s), median of {lat['models']['base (float)']['1']['runs']} runs, "
        f"1-min load average {load['before']} before, {load['after']} after)",
        f"QDQ model in ORT ({ort.get('qdq_residuals', 'float')} residual branches): test accuracy {ort['test_accuracy']:.2f}% (simulation {ort['simulation_test_accuracy']:.2f}%), "
        f"top-1 agreement with the simulation {ort['top1_agreement']:.2f}% of {ort['test_images']} test images",
        "",
    ]
