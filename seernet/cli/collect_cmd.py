"""``seernet collect``: measure the accuracy of policies into WORKDIR/samples.h5."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

HELP = "measure real accuracies of pruning + quantization policies (active sampling by default) into samples.h5"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.cli.common import add_run_arguments
    from seernet.evaluate import Protocol
    from seernet.space import SpaceChoices

    pr, sc = Protocol(), SpaceChoices()
    add_run_arguments(p)
    p.add_argument(
        "--samples",
        type=int,
        default=500,
        help="total samples the store should hold (default: %(default)s)",
    )
    p.add_argument(
        "--strategy", choices=("active", "random"), default="active", help="default: %(default)s"
    )
    p.add_argument("--acquisition", choices=("disagreement", "sensitivity"), default="disagreement",
                   help="what active sampling maximizes (default: %(default)s)")  # fmt: skip
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="policies per active round (default: %(default)s)",
    )
    p.add_argument("--warmup-fraction", type=float, default=0.2,
                   help="share of --samples measured as stratified random warm-up before active rounds (default: %(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    g = p.add_argument_group("where evaluations run (results do not depend on it)")
    g.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: this machine; ray: one Ray task per policy, needs pip install 'seernet[ray]' (default: %(default)s)")  # fmt: skip
    g.add_argument("--workers", type=int,
                   help="parallel evaluations: local processes (default 1 = in this process) or Ray tasks in flight (default: the cluster's CPUs / --cpus-per-task)")  # fmt: skip
    g.add_argument("--threads-per-worker", type=int,
                   help="torch threads per evaluation (default: 1 in worker processes, torch's default in-process)")  # fmt: skip
    g.add_argument(
        "--address",
        help="Ray cluster to join, e.g. ray://head:10001 or auto (default: start a private local one)",
    )
    g.add_argument(
        "--cpus-per-task",
        type=float,
        default=1.0,
        help="Ray CPUs per evaluation task (default: %(default)s)",
    )
    g.add_argument(
        "--gpus-per-task",
        type=float,
        default=0.0,
        help="Ray GPUs per evaluation task (default: %(default)s)",
    )
    g.add_argument("--max-retries", type=int, default=3,
                   help="Ray retries of a task whose worker died (default: %(default)s)")  # fmt: skip
    g = p.add_argument_group("evaluation protocol (fixed per store)")
    g.add_argument(
        "--finetune-steps",
        type=int,
        default=pr.finetune_steps,
        help="QAT steps per policy (default: %(default)s)",
    )
    g.add_argument(
        "--bn-batches",
        type=int,
        default=pr.bn_batches,
        help="adaptive-BN batches (default: %(default)s)",
    )
    g.add_argument(
        "--val-limit",
        type=int,
        default=pr.val_limit,
        help="score on the first N val images (default: all)",
    )
    g.add_argument(
        "--criterion",
        default=pr.criterion,
        help="channel importance: l1, l2, random (default: %(default)s)",
    )
    g = p.add_argument_group("policy space (fixed on the first collect)")
    g.add_argument(
        "--max-prune",
        type=float,
        default=sc.max_prune,
        help="largest pruning ratio per group (default: %(default)s)",
    )
    g.add_argument(
        "--prune-step",
        type=float,
        default=sc.prune_step,
        help="pruning ratio step (default: %(default)s)",
    )
    g.add_argument(
        "--bits-choices",
        default=",".join(map(str, sc.bits)),
        help="bit-widths to choose from (default: %(default)s)",
    )


def _choices(args: argparse.Namespace):  # noqa: ANN202
    from seernet.errors import UserError
    from seernet.space import SpaceChoices

    try:
        bits = tuple(int(b) for b in args.bits_choices.split(","))
        return SpaceChoices(args.max_prune, args.prune_step, bits)
    except ValueError as exc:
        raise UserError(f"invalid policy space options: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    from search.sampler import SamplerConfig
    from seernet.backends import BackendConfig
    from seernet.cli.common import open_run
    from seernet.collect import STORE_NAME, collect, store_spec
    from seernet.context import RunContext, record_space
    from seernet.device import resolve_device
    from seernet.errors import UserError
    from seernet.evaluate import Protocol
    from seernet.memory import check_run_fits
    from seernet.store import SampleStore

    if args.samples < 1:
        raise UserError(f"--samples must be at least 1, got {args.samples}")
    backend = BackendConfig(args.backend, args.workers, args.threads_per_worker, args.address,
                            args.cpus_per_task, args.gpus_per_task, args.max_retries)  # fmt: skip
    backend.check_available()  # before the workspace is created: a missing Ray writes nothing
    try:
        protocol = Protocol(args.bn_batches, args.finetune_steps, val_limit=args.val_limit,
                            criterion=args.criterion, seed=args.seed)  # fmt: skip
        sampler = SamplerConfig(strategy=args.strategy, acquisition=args.acquisition,
                                batch_size=args.batch_size, warmup_fraction=args.warmup_fraction,
                                seed=args.seed)  # fmt: skip
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    fresh = not Path(args.workdir).exists()
    try:
        ws, config = open_run(args)
        ctx = RunContext(ws, config, resolve_device(args.device))
        ctx.criterion(
            args.criterion
        )  # an unknown name or missing learned scores fail before any store exists
        if not config.space:
            record_space(ctx, _choices(args))
        elif ctx.space.choices != _choices(args):
            raise UserError(f"this workspace's policy space was fixed as {ctx.space.choices} on the first collect; "
                            "drop the space options or use another --workdir")  # fmt: skip
        # Load the weights now, and refuse a batch that cannot fit: both before any store exists.
        check_run_fits(ctx.model, ctx.space.input_shape, ctx.device, protocol.batch_size)
        store = SampleStore.open_or_create(ws.path(STORE_NAME), store_spec(ctx, protocol))
    except UserError:
        # A first collect that cannot start (missing data, bad weights) leaves no half-made
        # workspace behind; an existing one is never touched.
        if fresh:
            shutil.rmtree(args.workdir, ignore_errors=True)
        raise
    try:
        if len(store) >= args.samples:
            print(
                f"{ws.path(STORE_NAME)} already holds {len(store)} samples (>= --samples {args.samples}); nothing to do"
            )
        else:
            collect(ctx, store, args.samples, protocol, sampler, backend)
        print(summary(store))
    finally:
        store.close()
    return 0


def summary(store) -> str:  # noqa: ANN001
    """Accuracy range, cost ranges and seconds per sample of everything in the store."""
    from seernet.tables import format_table
    from seernet.units import format_bytes, format_count

    acc, costs, secs = store.accuracy, store.costs, store.seconds
    rows = [["accuracy (%)", f"{acc.min():.2f}", f"{acc.mean():.2f}", f"{acc.max():.2f}"]]
    for name, fmt in (
        ("flops", format_count),
        ("bitops", format_count),
        ("params", format_count),
        ("size", format_bytes),
    ):
        c = costs[name]
        rows.append([name, fmt(c.min()), fmt(c.mean()), fmt(c.max())])
    rows.append(["seconds/sample", f"{secs.min():.2f}", f"{secs.mean():.2f}", f"{secs.max():.2f}"])
    return f"{len(store)} samples in {store.path}\n" + format_table(
        ["", "min", "mean", "max"], rows
    )
