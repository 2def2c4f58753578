"""``seernet collect``: measure the accuracy of policies into WORKDIR/samples.h5."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

HELP = "measure real accuracies of pruning + quantization policies (active sampling by default) into samples.h5"
SAMPLES = 500  # --samples: a CLI-only figure, no settings class owns it


def add_arguments(p: argparse.ArgumentParser) -> None:
    from search.sampler import ACQUISITION_CHOICES, STRATEGIES, SamplerConfig
    from seernet.cli.common import (
        add_json_argument,
        add_run_arguments,
        add_seed_argument,
        add_setting,
    )
    from seernet.compression.criteria import LEARNED
    from seernet.compression.protocol import Protocol
    from seernet.compression.prune import BUILTIN_CRITERIA
    from seernet.space.policy import SpaceChoices
    from seernet.steps.backends import BACKENDS, BackendConfig

    pr, sc, sa, be = Protocol(), SpaceChoices(), SamplerConfig(), BackendConfig()
    add_run_arguments(p)
    p.add_argument(
        "--samples",
        type=int,
        default=SAMPLES,
        help="total samples the store should hold (default: %(default)s)",
    )
    add_setting(p, sa, "strategy", "how policies are chosen", choices=STRATEGIES)
    add_setting(
        p,
        sa,
        "acquisition",
        "what active sampling measures: landing = the solver's answers at budgets across the range "
        "and their neighbours; disagreement = SeerNet's most uncertain policies; auto = landing",
        choices=ACQUISITION_CHOICES,
    )
    add_setting(p, sa.landing, "risk", "landing: the solver maximizes mean - RISK x std")
    add_setting(p, sa, "batch_size", "policies per active round")
    add_setting(
        p,
        sa,
        "warmup_fraction",
        "share of --samples measured as stratified random warm-up before active rounds",
    )
    add_seed_argument(p, sa.seed, "the sampler and the evaluation protocol")
    add_json_argument(p, "print the store's summary as JSON only (progress and ETA stay on stderr)")
    g = p.add_argument_group("where evaluations run (results do not depend on it)")
    add_setting(
        g,
        be,
        "backend",
        "local: this machine; ray: one Ray task per policy, needs pip install 'seernet[ray]'",
        choices=BACKENDS,
    )
    add_setting(
        g,
        be,
        "workers",
        "parallel evaluations: local processes or Ray tasks in flight",
        type=int,
        shown="1 = in this process; Ray: the cluster's CPUs / --cpus-per-task",
    )
    add_setting(
        g,
        be,
        "threads_per_worker",
        "torch threads per evaluation",
        type=int,
        shown="1 in worker processes, torch's default in-process",
    )
    add_setting(
        g,
        be,
        "address",
        "Ray cluster to join, e.g. ray://head:10001 or auto",
        type=str,
        shown="start a private local one",
    )
    add_setting(g, be, "cpus_per_task", "Ray CPUs per evaluation task")
    add_setting(g, be, "gpus_per_task", "Ray GPUs per evaluation task")
    add_setting(g, be, "max_retries", "Ray retries of a task whose worker died")
    g = p.add_argument_group("evaluation protocol (fixed per store)")
    add_setting(g, pr, "finetune_steps", "QAT steps per policy")
    add_setting(g, pr, "bn_batches", "adaptive-BN batches")
    add_setting(g, pr, "val_limit", "score on the first N val images", type=int, shown="all")
    add_setting(
        g,
        pr,
        "criterion",
        f"channel importance: {', '.join([*BUILTIN_CRITERIA, *LEARNED])} "
        "(dynamic needs 'seernet dynamic-scores'; 'legr' was removed, it pruned as l2)",
    )
    g = p.add_argument_group("policy space (fixed on the first collect)")
    add_setting(g, sc, "max_prune", "largest pruning ratio per group")
    add_setting(g, sc, "prune_step", "pruning ratio step")
    add_setting(
        g, sc, "channel_multiple",
        "kept channel counts are multiples of N, or a group's full count (Torch-Pruning's round_to)",
        metavar="N",
    )  # fmt: skip
    g.add_argument(
        "--bits-choices",
        default=",".join(map(str, sc.bits)),
        help="bit-widths to choose from (default: %(default)s)",
    )


def _choices(args: argparse.Namespace):
    from seernet.errors import UserError
    from seernet.space.policy import SpaceChoices

    try:
        bits = tuple(int(b) for b in args.bits_choices.split(","))
        return SpaceChoices(
            args.max_prune, args.prune_step, bits, channel_multiple=args.channel_multiple
        )
    except ValueError as exc:
        raise UserError(f"invalid policy space options: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from search.sampler import SamplerConfig
    from seernet.cli.common import make_settings, open_run, print_json
    from seernet.compression.protocol import Protocol
    from seernet.device import resolve_device
    from seernet.errors import UserError
    from seernet.memory import check_run_fits
    from seernet.steps.backends import BackendConfig
    from seernet.steps.collect import collect, store_spec, store_summary
    from seernet.steps.context import RunContext, record_space
    from seernet.workspace.artifacts import STORE_NAME
    from seernet.workspace.store import SampleStore

    if args.samples < 1:
        raise UserError(f"--samples must be at least 1, got {args.samples}")
    backend = BackendConfig(
        args.backend,
        args.workers,
        args.threads_per_worker,
        args.address,
        args.cpus_per_task,
        args.gpus_per_task,
        args.max_retries,
    )
    backend.check_available()  # before the workspace is created: a missing Ray writes nothing
    protocol = make_settings(
        Protocol,
        args.bn_batches,
        args.finetune_steps,
        val_limit=args.val_limit,
        criterion=args.criterion,
        seed=args.seed,
    )
    landing = make_settings(replace, SamplerConfig().landing, risk=args.risk)
    sampler = make_settings(
        SamplerConfig,
        strategy=args.strategy,
        landing=landing,
        acquisition=args.acquisition,
        batch_size=args.batch_size,
        warmup_fraction=args.warmup_fraction,
        seed=args.seed,
    )
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
            raise UserError(
                f"this workspace's policy space was fixed as {ctx.space.choices} on the first collect; "
                "drop the space options or use another --workdir"
            )
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
        done = len(store) >= args.samples
        if not done:
            collect(ctx, store, args.samples, protocol, sampler, backend)
        if args.json:
            print_json(store_summary(store))
            return 0
        if done:
            print(
                f"{ws.path(STORE_NAME)} already holds {len(store)} samples (>= --samples {args.samples}); nothing to do"
            )
        print(summary(store))
    finally:
        store.close()
    return 0


def summary(store) -> str:
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
