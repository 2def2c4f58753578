"""The workspace's base model (registry architecture + weights file, or a plug-in) and data."""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from seernet.data.datasets import DataSplits, load_dataset
from seernet.data.task import Task
from seernet.errors import UserError
from seernet.models import create_model
from seernet.plugins import is_plugin, load_callable, refuse_python_object
from seernet.workspace.checkpoint import load_weights
from seernet.workspace.folder import RunConfig


def load_splits(config: RunConfig) -> DataSplits:
    """The run's dataset with its fixed train/val split, scored by the run's task."""
    splits = load_dataset(
        config.dataset, config.data_dir, config.val_size, config.split_seed, config.image_size
    )
    if config.metric or config.loss:
        refuse_python_object(config.metric, "metric")
        refuse_python_object(config.loss, "loss")
        metric = load_callable(config.metric) if config.metric else None
        splits = replace(
            splits, task=Task(metric, load_callable(config.loss) if config.loss else None)
        )
    return splits


def build_model(config: RunConfig, splits: DataSplits, with_weights: bool = True) -> nn.Module:
    """Create the run's model for this data; load its weights unless told not to.

    A plug-in model comes with its own weights; ``--weights`` still replaces them."""
    model = create_model(config.model, splits.num_classes, splits.in_channels)
    if with_weights:
        if not config.weights:
            if is_plugin(config.model):
                return model
            raise UserError(
                f"no weights for {config.model!r} in this workspace: pass --weights FILE or run 'seernet pretrain'"
            )
        load_weights(model, config.weights, config.model)
    return model
