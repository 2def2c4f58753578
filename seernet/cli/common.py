"""Arguments shared by subcommands and the code that opens the run they describe."""

from __future__ import annotations

import argparse
from pathlib import Path

from seernet.workspace import RunConfig, Workspace

DEFAULT_WORKDIR = "seernet-run"


def add_workdir_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--workdir``, declared once for every command."""
    p.add_argument("--workdir", default=DEFAULT_WORKDIR, help="workspace folder (default: %(default)s)")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Workspace and run-identity options; identity options only matter on first use."""
    g = p.add_argument_group("run")
    add_workdir_argument(g)
    g.add_argument("--model", help="model name for a new workspace (default: resnet20)")
    g.add_argument("--weights", help="base model checkpoint (default: the shipped ResNet-20 for Fashion-MNIST)")
    g.add_argument("--dataset", help="fashion-mnist (default), cifar10 or imagefolder")
    g.add_argument("--data-dir", help="dataset folder (default for fashion-mnist: /usr/share/datasets/fashion-mnist)")
    g.add_argument("--val-size", type=int, help="images of the training set held out for validation (default: 5000)")
    g.add_argument("--split-seed", type=int, help="seed of the train/val split (default: 0)")
    g.add_argument("--image-size", type=int,
                   help="imagefolder: square side images are resized to (default: their own size when they all "
                        "share one, else 224)")  # fmt: skip
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")


def open_run(args: argparse.Namespace) -> tuple[Workspace, RunConfig]:
    """Open (or create) the workspace from the parsed options."""
    from seernet.datasets import dataset_names
    from seernet.errors import UserError
    from seernet.models import model_names

    # Validate names before anything is written, so a typo leaves no workspace behind.
    if args.model and args.model not in model_names():
        raise UserError(f"unknown model {args.model!r}; known models: {', '.join(model_names())}")
    if args.dataset and args.dataset not in dataset_names():
        raise UserError(f"unknown dataset {args.dataset!r}; known datasets: {', '.join(dataset_names())}")
    ws = Workspace(args.workdir)
    weights = str(Path(args.weights).resolve()) if args.weights else None
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    config = ws.open(
        {
            "model": args.model,
            "dataset": args.dataset,
            "data_dir": data_dir,
            "weights": weights,
            "val_size": args.val_size,
            "split_seed": args.split_seed,
            "image_size": getattr(args, "image_size", None),
        }
    )
    return ws, config
