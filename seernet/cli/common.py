"""The CLI's one option layer: every shared option, its default and its help, declared once.

Defaults come from the settings dataclasses (``RunConfig``, ``Protocol``, ``SamplerConfig``,
...) through ``add_setting``, so a default is never written a second time in a help
string; ``make_settings`` turns a dataclass's ``ValueError`` into the one-line user error.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from seernet.workspace.folder import RunConfig, Workspace

DEFAULT_WORKDIR = "seernet-run"
DEVICE_HELP = "auto (CUDA when present), cpu, cuda, cuda:N"
JSON_HELP = "print machine-readable JSON only"

Parser = argparse.ArgumentParser | argparse._ArgumentGroup
T = TypeVar("T")


def add_workdir_argument(p: Parser) -> None:
    """``--workdir``, declared once for every command."""
    p.add_argument(
        "--workdir", default=DEFAULT_WORKDIR, help="workspace folder (default: %(default)s)"
    )


def add_device_argument(p: Parser, purpose: str = "") -> None:
    """``--device`` with one help text; ``purpose`` says what runs there when that is not everything."""
    lead = f"{purpose}: " if purpose else ""
    p.add_argument("--device", default="auto", help=f"{lead}{DEVICE_HELP} (default: %(default)s)")


def add_seed_argument(p: Parser, default: int = 0, what: str = "every random choice") -> None:
    """``--seed``; ``default`` is the owning settings dataclass's ``seed``."""
    p.add_argument(
        "--seed", type=int, default=default, help=f"seed of {what} (default: %(default)s)"
    )


def add_json_argument(p: Parser, what: str = JSON_HELP) -> None:
    """``--json``: the command's result as JSON on stdout and nothing else there."""
    p.add_argument("--json", action="store_true", help=what)


def add_setting(
    p: Parser,
    settings: object,
    name: str,
    help: str,
    flag: str | None = None,
    shown: str | None = None,
    **kw: Any,
) -> None:
    """``--name`` whose default (and type) is ``settings.name``; "(default: ...)" is appended to ``help``.

    ``shown`` replaces the printed default where the value itself says little (None = "all").
    """
    default = getattr(settings, name)
    if isinstance(default, bool) and "action" not in kw:
        kw["action"] = argparse.BooleanOptionalAction
    elif default is not None and not {"type", "action", "choices"} & kw.keys():
        kw["type"] = type(default)
    text = "%(default)s" if shown is None else shown
    p.add_argument(
        flag or "--" + name.replace("_", "-"),
        default=default,
        help=f"{help} (default: {text})",
        **kw,
    )


def make_settings(cls: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``cls(*args, **kwargs)``, a dataclass's ``ValueError`` becoming the one-line user error."""
    from seernet.errors import UserError

    try:
        return cls(*args, **kwargs)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def print_json(obj: object) -> None:
    """The ``--json`` output: one indented JSON document."""
    print(json.dumps(obj, indent=2, default=str))


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Workspace and run-identity options; identity options only matter on first use.

    Identity options default to None (not given), so a later command does not overwrite
    what the workspace recorded; the help shows ``RunConfig``'s value for a new workspace.
    """
    from seernet.data.datasets import FASHION_MNIST_DIR

    d = RunConfig()
    g = p.add_argument_group("run")
    add_workdir_argument(g)
    g.add_argument(
        "--model",
        help=f"model name, or your own: FILE.py:CALLABLE or package.module:CALLABLE returning the "
        f"nn.Module with its weights (default: {d.model})",
    )
    g.add_argument(
        "--weights", help="base model checkpoint (default: the shipped ResNet-20 for Fashion-MNIST)"
    )
    g.add_argument("--dataset", help=f"{d.dataset} (default), cifar10 or imagefolder")
    g.add_argument(
        "--data",
        help="your own data: FILE.py:CALLABLE returning {'train': Dataset, 'val': Dataset[, 'test': "
        "Dataset]} of (input, target) pairs (replaces --dataset)",
    )
    g.add_argument(
        "--metric",
        help="your own metric: FILE.py:CALLABLE, metric(model, batches) -> float, higher is better; "
        "batches yields (inputs, targets) on the model's device (default: top-1 accuracy)",
    )
    g.add_argument(
        "--loss",
        help="your own fine-tuning loss: FILE.py:CALLABLE, loss(outputs, targets) -> scalar tensor "
        "(default: cross-entropy)",
    )
    g.add_argument(
        "--data-dir", help=f"dataset folder (default for fashion-mnist: {FASHION_MNIST_DIR})"
    )
    g.add_argument(
        "--val-size",
        type=int,
        help=f"images of the training set held out for validation (default: {d.val_size})",
    )
    g.add_argument(
        "--split-seed", type=int, help=f"seed of the train/val split (default: {d.split_seed})"
    )
    g.add_argument(
        "--image-size",
        type=int,
        help="imagefolder: square side images are resized to (default: their own size when they all "
        "share one, else 224)",
    )
    add_device_argument(g)


def open_run(args: argparse.Namespace) -> tuple[Workspace, RunConfig]:
    """Open (or create) the workspace from the parsed options."""
    from seernet.data.datasets import dataset_names
    from seernet.errors import UserError
    from seernet.models import model_names
    from seernet.plugins import is_plugin

    # Validate names (and import plug-ins) before anything is written, so a typo leaves no
    # workspace behind.
    model, dataset, metric, loss = (
        plugin_option(getattr(args, k, None), f"--{k}") for k in ("model", "data", "metric", "loss")
    )
    if getattr(args, "data", None) and args.dataset:
        raise UserError("give --data (your own) or --dataset (a built-in one), not both")
    dataset = dataset or args.dataset
    if args.model and not is_plugin(args.model) and args.model not in model_names():
        raise UserError(f"unknown model {args.model!r}; known models: {', '.join(model_names())}")
    if args.dataset and args.dataset not in dataset_names():
        raise UserError(
            f"unknown dataset {args.dataset!r}; known datasets: {', '.join(dataset_names())}"
        )
    ws = Workspace(args.workdir)
    weights = str(Path(args.weights).resolve()) if args.weights else None
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    config = ws.open(
        {
            "model": model or args.model,
            "dataset": dataset,
            "metric": metric,
            "loss": loss,
            "data_dir": data_dir,
            "weights": weights,
            "val_size": args.val_size,
            "split_seed": args.split_seed,
            "image_size": getattr(args, "image_size", None),
        }
    )
    return ws, config


def plugin_option(value: str | None, flag: str) -> str | None:
    """A plug-in option's recorded form (file made absolute, callable imported once to check);
    None when not given or when ``--model`` names a registry model."""
    from seernet.errors import UserError
    from seernet.plugins import is_plugin, load_callable, normalized

    if not value or (flag == "--model" and not is_plugin(value)):
        return None
    if not is_plugin(value):
        raise UserError(f"{flag} {value!r}: write FILE.py:CALLABLE or package.module:CALLABLE")
    spec = normalized(value)
    load_callable(spec)
    return spec
