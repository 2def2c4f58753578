"""``seernet compress``: prune + quantize + fine-tune one solved policy, then export it."""

from __future__ import annotations

import argparse

HELP = ("build the compressed model of a policy file (prune, quantize, QAT fine-tune), report val/test "
        "accuracy, costs and CPU latency, and export it to WORKDIR/compressed/<name>/")  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.compress import DEFAULT_STEPS, CompressSettings

    d = CompressSettings()
    p.add_argument("policy", help="policy file written by 'seernet solve' (WORKDIR/policies/<name>.json)")
    from seernet.cli.common import add_workdir_argument

    add_workdir_argument(p)
    p.add_argument("--epochs", type=float, help="QAT fine-tuning epochs, fractions allowed (default: --steps)")
    p.add_argument("--steps", type=int, help=f"QAT fine-tuning steps (default: {DEFAULT_STEPS})")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate of the cosine schedule (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    p.add_argument("--criterion", default=d.criterion,
                   help="channel importance used to prune; use the one 'collect' used (default: %(default)s)")  # fmt: skip
    p.add_argument("--distill", type=float, default=d.distill,
                   help="weight in 0..1 of the KL to the float base model's softened logits in the fine-tuning "
                        "loss, the rest label cross-entropy; 0 turns distillation off (default: %(default)s)")  # fmt: skip
    p.add_argument("--temperature", type=float, default=d.temperature,
                   help="temperature softening both logits in the distillation term (default: %(default)s)")
    p.add_argument("--lsq", action=argparse.BooleanOptionalAction, default=d.lsq,
                   help="learn the weight and activation step sizes while fine-tuning (LSQ) (default: %(default)s)")  # fmt: skip
    p.add_argument("--latency-runs", type=int, default=d.latency_runs, help="timed runs per latency figure (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--json", action="store_true", help="print metrics.json only")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from seernet.compress import CompressSettings, compress, read_policy
    from seernet.context import RunContext
    from seernet.device import resolve_device
    from seernet.errors import UserError
    from seernet.prune import make_criterion
    from seernet.workspace import Workspace

    try:
        settings = CompressSettings(args.epochs, args.steps, args.lr, args.batch_size, seed=args.seed,
                                    criterion=args.criterion, latency_runs=args.latency_runs, lsq=args.lsq,
                                    distill=args.distill, temperature=args.temperature)  # fmt: skip
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    ws = Workspace(args.workdir)
    ctx = RunContext(ws, ws.read(), resolve_device(args.device))
    make_criterion(args.criterion)  # after the context: it registers the workspace's learned criteria
    path = Path(args.policy)
    doc, policy = read_policy(path, ctx.space)
    metrics = compress(ctx, doc, policy, settings, source=path)
    print(json.dumps(metrics, indent=2) if args.json else render(metrics))
    return 0


def render(m: dict) -> str:
    """Human-readable summary of one compressed model's metrics."""
    from seernet.solve import format_cost
    from seernet.tables import format_table
    from seernet.units import format_bytes

    acc = m["accuracy"]
    accs = [[when, acc[k]["val"], acc[k]["test"]] for when, k in (("before QAT", "before_finetune"), ("after QAT", "after_finetune"))]
    costs = [[k, format_cost(k, v), format_cost(k, m["unpruned"][k]), f"{100 * v / m['unpruned'][k]:.1f}%"]
             for k, v in m["costs"].items()]  # fmt: skip
    files = [[name, n, format_bytes(n)] for name, n in m["files"].items()]
    files.append(["(base model, float32)", m["base_float_bytes"], format_bytes(m["base_float_bytes"])])
    lat = m["latency"]
    times = [[name, *(v[str(b)]["median_ms"] for b in lat["batch_sizes"])] for name, v in lat["models"].items()]
    return "\n".join([
        f"== {m['name']}: {m['finetune_steps']} QAT steps on {m['device']} ==",
        format_table(["", "val %", "test %"], accs), "",
        format_table(["cost", "compressed", "unpruned", "ratio"], costs), "",
        format_table(["file", "bytes", ""], files), "",
        format_table(["CPU latency, median ms", *(f"batch {b}" for b in lat["batch_sizes"])], times),
        f"(CPU, {lat['threads']} thread(s), median of {m['settings']['latency_runs']} runs)",
        *(f"note: {n}" for n in m["notes"]),
        f"export check: max |diff| TorchScript {m['export_check']['torchscript_max_abs_diff']:.2g}, "
        f"packed {m['export_check']['packed_max_abs_diff']:.2g}",
        f"wrote {m['folder']} in {m['seconds']['total']:.0f} s",
    ])  # fmt: skip
