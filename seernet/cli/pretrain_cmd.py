"""``seernet pretrain``: train the workspace's base model and make it the run's weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "train the workspace's base model from scratch (seeded) and save its checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.cli.common import add_run_arguments
    from seernet.pretrain import PretrainSettings

    d = PretrainSettings()
    add_run_arguments(p)
    p.add_argument("--epochs", type=int, default=d.epochs, help="default: %(default)s")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    p.add_argument("--lr", type=float, default=d.lr, help="peak one-cycle learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    p.add_argument("--out", help="checkpoint path (default: WORKDIR/base.pt)")


def run(args: argparse.Namespace) -> int:
    import torch

    from seernet.base_model import build_model, load_splits
    from seernet.checkpoint import save_checkpoint
    from seernet.cli.common import open_run
    from seernet.device import resolve_device
    from seernet.errors import UserError
    from seernet.memory import check_run_fits
    from seernet.pretrain import PretrainSettings, pretrain
    from seernet.profile import count_macs_params

    try:
        settings = PretrainSettings(args.epochs, args.batch_size, args.lr, seed=args.seed)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    ws, config = open_run(args)
    splits = load_splits(config)
    device = resolve_device(args.device)
    torch.manual_seed(settings.seed)
    model = build_model(config, splits, with_weights=False)
    shape = (1, splits.in_channels, splits.image_size, splits.image_size)
    check_run_fits(model.to(device), shape, device, settings.batch_size)
    result = pretrain(model, splits, settings, device)
    macs, params = count_macs_params(model.cpu(), shape)
    out = Path(args.out) if args.out else ws.path("base.pt")
    meta = {
        "model": config.model, "dataset": config.dataset, "num_classes": splits.num_classes,
        "in_channels": splits.in_channels, "image_size": splits.image_size,
        "settings": vars(settings) if hasattr(settings, "__dict__") else {}, "split_seed": config.split_seed,
        "val_size": config.val_size, "test_accuracy": result["test_accuracy"],
        "val_accuracy": result["val_accuracy"][-1], "macs": macs, "params": params,
        "train_seconds": round(result["seconds"], 1),
    }  # fmt: skip
    save_checkpoint(out, model, meta)
    config.weights = str(out.resolve())
    ws.write(config)
    meta["file_bytes"] = out.stat().st_size
    print(json.dumps(meta, indent=2))
    print(f"test accuracy {result['test_accuracy']:.2f}%  ({result['seconds']:.0f} s); saved {out}")
    return 0
