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
    from seernet.api.workflow import collect_samples
    from seernet.cli.common import make_settings, open_run, print_json
    from seernet.compression.protocol import Protocol
    from seernet.device import resolve_device
    from seernet.errors import UserError
    from seernet.steps.backends import BackendConfig
    from seernet.steps.context import RunContext, record_space
    from seernet.workspace.artifacts import STORE_NAME

    if args.samples < 1:
        raise UserError(f"--samples must be at least 1, got {args.samples}")
    backend = BackendConfig(args.backend, args.workers, args.threads_per_worker, args.address,
                            args.cpus_per_task, args.gpus_per_task, args.max_retries)  # fmt: skip
    backend.check_available()  # before the workspace is created: a missing Ray writes nothing
    protocol = make_settings(Protocol, args.bn_batches, args.finetune_steps,
                             val_limit=args.val_limit, criterion=args.criterion, seed=args.seed)  # fmt: skip
    landing = make_settings(replace, SamplerConfig().landing, risk=args.risk)
    sampler = make_settings(SamplerConfig, strategy=args.strategy, landing=landing,
                            acquisition=args.acquisition, batch_size=args.batch_size,
                            warmup_fraction=args.warmup_fraction, seed=args.seed)  # fmt: skip
    fresh = not Path(args.workdir).exists()
    try:
        ws, config = open_run(args)
        ctx = RunContext(ws, config, resolve_device(args.device))
        if not config.space:
            record_space(ctx, _choices(args))
        elif ctx.space.choices != _choices(args):
            raise UserError(
                f"this workspace's policy space was fixed as {ctx.space.choices} on the first collect; "
                "drop the space options or use another --workdir"
            )
        stats = collect_samples(ctx, args.samples, protocol, sampler, backend)
    except UserError:
        # A first collect that cannot start (missing data, bad weights, a batch that does not
        # fit) leaves no half-made workspace behind; an existing one is never touched, nor one
        # whose store was created (it holds what was measured, or says nothing was).
        if fresh and not (Path(args.workdir) / STORE_NAME).exists():
            shutil.rmtree(args.workdir, ignore_errors=True)
        raise
    if args.json:
        print_json(stats)
        return 0
    if not stats["collected"]:
        print(f"{stats['path']} already holds {stats['samples']} samples (>= --samples {args.samples}); nothing to do")  # fmt: skip
    print(summary(stats))
    return 0


def summary(stats: dict) -> str:
    """Accuracy range, cost ranges and seconds per sample of everything in the store
    (``collect_samples``'s summary)."""
    from seernet.tables import format_table
    from seernet.units import format_bytes, format_count

    rows = []
    for name, label, fmt in (("accuracy", "accuracy (%)", "{:.2f}".format), ("flops", "flops", format_count),
                             ("bitops", "bitops", format_count), ("params", "params", format_count),
                             ("size", "size", format_bytes), ("seconds", "seconds/sample", "{:.2f}".format)):  # fmt: skip
        c = stats[name]
        rows.append([label, fmt(c["min"]), fmt(c["mean"]), fmt(c["max"])])
    return f"{stats['samples']} samples in {stats['path']}\n" + format_table(
        ["", "min", "mean", "max"], rows
    )
