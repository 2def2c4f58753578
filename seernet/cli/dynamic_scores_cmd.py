"""``seernet dynamic-scores``: LAP's dynamic filter scores, for ``--criterion dynamic``."""

from __future__ import annotations

import argparse

HELP = ("score every channel by how its filter changes in a short seeded fine-tune (LAP's dynamic "
        "filter selection): s = m/mean(m) + d/mean(d) per layer with m = mean|W_after|, "
        "d = mean|W_after - W_before|, averaged over a group's coupled layers; lowest pruned first. "
        "Writes WORKDIR/dynamic_scores.pt, used by --criterion dynamic")  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.cli.common import add_run_arguments
    from seernet.dynamic_criterion import DynamicSettings

    d = DynamicSettings()
    add_run_arguments(p)
    p.add_argument("--steps", type=int, default=d.steps, help="SGD steps of the fine-tune (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate, cosine decay, no weight decay (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from seernet.cli.common import open_run
    from seernet.context import RunContext
    from seernet.device import resolve_device
    from seernet.dynamic_criterion import DynamicSettings, compute_scores, save_scores, scores_meta
    from seernet.errors import UserError

    try:
        settings = DynamicSettings(args.steps, args.batch_size, args.lr, args.seed)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    ws, config = open_run(args)
    ctx = RunContext(ws, config, resolve_device(args.device))
    if not config.space:
        raise UserError(f"{ws.root} has no policy space yet: run 'seernet collect' (even --samples 1) first")
    with tqdm(total=settings.steps, desc="fine-tune", unit="step", leave=False) as bar:
        scores = compute_scores(ctx, settings, bar)
    path = save_scores(ws, scores, scores_meta(ctx, settings))
    print(f"scored {sum(len(v) for v in scores.values())} channels in {len(scores)} groups "
          f"({settings.steps} steps, seed {settings.seed}); wrote {path}")  # fmt: skip
    return 0
