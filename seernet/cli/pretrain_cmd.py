"""``seernet pretrain``: train the workspace's base model and make it the run's weights."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "train the workspace's base model from scratch (seeded) and save its checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.cli.common import (
        add_json_argument,
        add_run_arguments,
        add_seed_argument,
        add_setting,
    )
    from seernet.steps.pretrain import PretrainSettings

    d = PretrainSettings()
    add_run_arguments(p)
    add_setting(p, d, "epochs", "training epochs")
    add_setting(p, d, "batch_size", "images per step")
    add_setting(p, d, "lr", "peak one-cycle learning rate")
    add_seed_argument(p, d.seed, "the initial weights and the batches")
    p.add_argument("--out", help="checkpoint path (default: WORKDIR/base.pt)")
    add_json_argument(p, "print the checkpoint's metadata as JSON only")


def run(args: argparse.Namespace) -> int:
    import torch

    from seernet.cli.common import make_settings, open_run, print_json
    from seernet.device import resolve_device
    from seernet.memory import check_run_fits
    from seernet.models.base_model import build_model, load_splits
    from seernet.space.mac_counter import count_macs_params
    from seernet.steps.pretrain import PretrainSettings, pretrain
    from seernet.workspace.checkpoint import save_checkpoint

    settings = make_settings(
        PretrainSettings, args.epochs, args.batch_size, args.lr, seed=args.seed
    )
    ws, config = open_run(args)
    splits = load_splits(config)
    device = resolve_device(args.device)
    torch.manual_seed(settings.seed)
    model = build_model(config, splits, with_weights=False)
    shape = splits.input_shape
    check_run_fits(model.to(device), shape, device, settings.batch_size)
    result = pretrain(model, splits, settings, device)
    macs, params = count_macs_params(model.cpu(), shape)
    out = Path(args.out) if args.out else ws.path("base.pt")
    meta = {
        "model": config.model,
        "dataset": config.dataset,
        "num_classes": splits.num_classes,
        "in_channels": splits.in_channels,
        "image_size": splits.image_size,
        "settings": vars(settings) if hasattr(settings, "__dict__") else {},
        "split_seed": config.split_seed,
        "val_size": config.val_size,
        "test_accuracy": result["test_accuracy"],
        "val_accuracy": result["val_accuracy"][-1],
        "macs": macs,
        "params": params,
        "train_seconds": round(result["seconds"], 1),
    }
    save_checkpoint(out, model, meta)
    config.weights = str(out.resolve())
    ws.write(config)
    meta["file_bytes"] = out.stat().st_size
    if args.json:
        print_json(meta)
        return 0
    print(
        f"{config.model} on {config.dataset}: val accuracy {meta['val_accuracy']:.2f}%, "
        f"{meta['macs']:,} MACs, {meta['params']:,} parameters, {meta['file_bytes']:,} bytes"
    )
    print(f"test accuracy {result['test_accuracy']:.2f}%  ({result['seconds']:.0f} s); saved {out}")
    return 0
