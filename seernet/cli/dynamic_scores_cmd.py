"""``seernet dynamic-scores``: LAP's dynamic filter scores, for ``--criterion dynamic``."""

from __future__ import annotations

import argparse

HELP = (
    "score every channel by how its filter changes in a short seeded fine-tune (LAP's dynamic "
    "filter selection): s = m/mean(m) + d/mean(d) per layer with m = mean|W_after|, "
    "d = mean|W_after - W_before|, averaged over a group's coupled layers; lowest pruned first. "
    "Writes WORKDIR/dynamic_scores.pt, used by --criterion dynamic"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.cli.common import (
        add_json_argument,
        add_run_arguments,
        add_seed_argument,
        add_setting,
    )
    from seernet.compression.dynamic_criterion import DynamicSettings

    d = DynamicSettings()
    add_run_arguments(p)
    add_setting(p, d, "steps", "SGD steps of the fine-tune")
    add_setting(p, d, "batch_size", "images per step")
    add_setting(p, d, "lr", "peak learning rate, cosine decay, no weight decay")
    add_seed_argument(p, d.seed, "the fine-tune's batches")
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from seernet.cli.common import make_settings, open_run, print_json
    from seernet.compression.dynamic_criterion import (
        DynamicSettings,
        compute_scores,
        save_scores,
        scores_meta,
    )
    from seernet.device import resolve_device
    from seernet.errors import UserError
    from seernet.steps.context import RunContext

    settings = make_settings(DynamicSettings, args.steps, args.batch_size, args.lr, args.seed)
    ws, config = open_run(args)
    ctx = RunContext(ws, config, resolve_device(args.device))
    if not config.space:
        raise UserError(
            f"{ws.root} has no policy space yet: run 'seernet collect' (even --samples 1) first"
        )
    with tqdm(total=settings.steps, desc="fine-tune", unit="step", leave=False) as bar:
        scores = compute_scores(ctx, settings, bar)
    path = save_scores(ws, scores, scores_meta(ctx, settings))
    channels = sum(len(v) for v in scores.values())
    if args.json:
        print_json(
            {
                "channels": channels,
                "groups": len(scores),
                "steps": settings.steps,
                "seed": settings.seed,
                "path": str(path),
            }
        )
        return 0
    print(
        f"scored {channels} channels in {len(scores)} groups "
        f"({settings.steps} steps, seed {settings.seed}); wrote {path}"
    )
    return 0
