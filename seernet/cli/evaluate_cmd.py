"""``seernet evaluate``: val and test accuracy, MACs and parameters of the base model."""

from __future__ import annotations

import argparse

HELP = "evaluate the workspace's base model: val/test top-1, FLOPs (MACs), parameters"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.cli.common import add_json_argument, add_run_arguments

    add_run_arguments(p)
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    from seernet.cli.common import open_run, print_json
    from seernet.device import resolve_device
    from seernet.memory import check_run_fits
    from seernet.models.base_model import build_model, load_splits
    from seernet.space.mac_counter import count_macs_params
    from seernet.tables import format_table
    from seernet.units import format_count

    _, config = open_run(args)
    splits = load_splits(config)
    device = resolve_device(args.device)
    model = build_model(config, splits).to(device)
    shape = splits.input_shape
    check_run_fits(model, shape, device, train_batch=None)
    macs, params = count_macs_params(model, shape)
    result = {
        "model": config.model,
        "dataset": config.dataset,
        "weights": config.weights,
        "val_accuracy": splits.task.score(model, splits.val, device),
        "test_accuracy": splits.task.score(model, splits.test, device),
        "flops": macs,
        "params": params,
    }
    if args.json:
        print_json(result)
        return 0
    rows = [
        [
            config.model,
            config.dataset,
            f"{result['val_accuracy']:.2f}",
            f"{result['test_accuracy']:.2f}",
            format_count(macs),
            format_count(params),
        ]
    ]
    print(format_table(["model", "dataset", "val %", "test %", "FLOPs (MACs)", "params"], rows))
    return 0
