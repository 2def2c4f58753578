"""``seernet compress``: prune + quantize + fine-tune one solved policy, then export it."""

from __future__ import annotations

import argparse

HELP = (
    "build the compressed model of a policy file (prune, quantize, QAT fine-tune), report val/test "
    "accuracy, costs and CPU latency (torch, and ONNX Runtime when installed), and export it to "
    "WORKDIR/compressed/<name>/ (TorchScript, ONNX, QDQ ONNX for ONNX Runtime's integer kernels, packed codes)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.cli.common import (
        add_device_argument,
        add_json_argument,
        add_seed_argument,
        add_setting,
        add_workdir_argument,
    )
    from seernet.steps.compress import DEFAULT_STEPS, CompressSettings

    d = CompressSettings()
    p.add_argument(
        "policy", help="policy file written by 'seernet solve' (WORKDIR/policies/<name>.json)"
    )
    add_workdir_argument(p)
    add_setting(
        p, d, "epochs", "QAT fine-tuning epochs, fractions allowed", type=float, shown="--steps"
    )
    add_setting(p, d, "steps", "QAT fine-tuning steps", type=int, shown=str(DEFAULT_STEPS))
    add_setting(p, d, "lr", "peak learning rate of the cosine schedule")
    add_setting(p, d, "batch_size", "images per fine-tuning step")
    add_seed_argument(p, d.seed, "the adaptive-BN and fine-tuning batches")
    add_setting(p, d, "criterion", "channel importance used to prune; use the one 'collect' used")
    add_setting(
        p,
        d,
        "distill",
        "weight in 0..1 of the KL to the float base model's softened logits in the fine-tuning "
        "loss, the rest label cross-entropy; 0 turns distillation off",
    )
    add_setting(p, d, "temperature", "temperature softening both logits in the distillation term")
    add_setting(p, d, "lsq", "learn the weight and activation step sizes while fine-tuning (LSQ)")
    add_setting(p, d, "latency_runs", "timed runs per latency figure")
    add_setting(p, d, "ort_threads", "ONNX Runtime intra-op threads for its latency figures")
    add_setting(
        p,
        d,
        "qdq_residuals",
        "float: model.qdq.onnx is the exact form, residual-branch convs run in float; int8: it also "
        "quantizes their outputs at 8 bits, so ONNX Runtime runs every conv on integer kernels "
        "(an approximation, about 1.5%% of top-1 answers differ from the simulation's)",
    )
    add_device_argument(p)
    add_json_argument(p, "print metrics.json only (progress on stderr)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from seernet.api.workflow import compress_policy
    from seernet.cli.common import make_settings, print_json
    from seernet.device import resolve_device
    from seernet.steps.compress import CompressSettings
    from seernet.steps.context import RunContext
    from seernet.workspace.folder import Workspace

    settings = make_settings(
        CompressSettings,
        args.epochs,
        args.steps,
        args.lr,
        args.batch_size,
        seed=args.seed,
        criterion=args.criterion,
        latency_runs=args.latency_runs,
        lsq=args.lsq,
        distill=args.distill,
        temperature=args.temperature,
        ort_threads=args.ort_threads,
        qdq_residuals=args.qdq_residuals,
    )
    ws = Workspace(args.workdir)
    ctx = RunContext(ws, ws.read(), resolve_device(args.device))
    _, metrics = compress_policy(ctx, Path(args.policy), settings)
    if args.json:
        print_json(metrics)
    else:
        print(render(metrics))
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
    costs = [
        [
            k,
            format_cost(k, v),
            format_cost(k, m["unpruned"][k]),
            f"{100 * v / m['unpruned'][k]:.1f}%",
        ]
        for k, v in m["costs"].items()
    ]
    files = [[name, n, format_bytes(n)] for name, n in m["files"].items()]
    files.append(
        ["(base model, float32)", m["base_float_bytes"], format_bytes(m["base_float_bytes"])]
    )
    lat = m["latency"]
    times = [
        [name, *(v[str(b)]["median_ms"] for b in lat["batch_sizes"])]
        for name, v in lat["models"].items()
    ]
    return "\n".join(
        [
            f"== {m['name']}: {m['finetune_steps']} QAT steps on {m['device']} ==",
            format_table(["", "val %", "test %"], accs),
            "",
            format_table(["cost", "compressed", "unpruned", "ratio"], costs),
            "",
            format_table(["file", "bytes", ""], files),
            "",
            format_table(
                ["CPU latency, median ms", *(f"batch {b}" for b in lat["batch_sizes"])], times
            ),
            f"(CPU, {lat['threads']} thread(s), median of {m['settings']['latency_runs']} runs)",
            *_render_ort(m.get("onnxruntime")),
            *_render_budget(m.get("latency_budget")),
            *(f"note: {n}" for n in m["notes"]),
            f"export check: max |diff| TorchScript {m['export_check']['torchscript_max_abs_diff']:.2g}, "
            f"packed {m['export_check']['packed_max_abs_diff']:.2g}",
            f"wrote {m['folder']} in {m['seconds']['total']:.0f} s",
        ]
    )


def _render_budget(held: dict | None) -> list[str]:
    """The latency budget's line: measured where its table was made, held or not."""
    if not held:
        return []
    verdict = "held" if held["held"] else "NOT held"
    lines = [
        f"latency budget {held['budget_ms']:.3f} ms ({held['runtime']}, batch {held['batch_size']}, "
        f"{held['threads']} thread(s)): measured {held['measured_ms']:.3f} ms, median of {held['runs']} "
        f"runs at 1-min load {held['load_average_1min']}: {verdict}"
    ]
    if "held_as_share" in held:
        share = "held" if held["held_as_share"] else "NOT held"
        lines.append(
            f"  as a share of the unpruned model timed with it ({held['unpruned_measured_ms']:.3f} ms): "
            f"{100 * held['share_measured']:.1f}% against {100 * held['share_allowed']:.1f}% allowed: {share}"
        )
    return lines


def _render_ort(ort: dict | None) -> list[str]:
    """The ONNX Runtime lines of the summary (none when ORT was not measured)."""
    from seernet.tables import format_table

    if not ort:
        return []
    lat = ort["latency"]
    base = lat["models"]["base (float)"]
    rows = [
        [
            name,
            *(f"{v[str(b)]['median_ms']:.3f}" for b in lat["batch_sizes"]),
            *(
                f"{base[str(b)]['median_ms'] / v[str(b)]['median_ms']:.2f}x"
                for b in lat["batch_sizes"]
            ),
        ]
        for name, v in lat["models"].items()
    ]
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
        ),
        f"(onnxruntime {lat['version']}, {lat['threads']} intra-op thread(s), median of {lat['models']['base (float)']['1']['runs']} runs, "
        f"1-min load average {load['before']} before, {load['after']} after)",
        f"QDQ model in ORT ({ort.get('qdq_residuals', 'float')} residual branches): test accuracy {ort['test_accuracy']:.2f}% (simulation {ort['simulation_test_accuracy']:.2f}%), "
        f"top-1 agreement with the simulation {ort['top1_agreement']:.2f}% of {ort['test_images']} test images",
        "",
    ]
