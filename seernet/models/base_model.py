"""The workspace's base model: architecture from the registry, weights from a file."""

from __future__ import annotations

from torch import nn

from seernet.data.datasets import DataSplits, load_dataset
from seernet.errors import UserError
from seernet.models import create_model
from seernet.workspace.checkpoint import load_weights
from seernet.workspace.folder import RunConfig


def load_splits(config: RunConfig) -> DataSplits:
    """The run's dataset with its fixed train/val split."""
    return load_dataset(
        config.dataset, config.data_dir, config.val_size, config.split_seed, config.image_size
    )


def build_model(config: RunConfig, splits: DataSplits, with_weights: bool = True) -> nn.Module:
    """Create the run's model for this data; load its weights unless told not to."""
    model = create_model(config.model, splits.num_classes, splits.in_channels)
    if with_weights:
        if not config.weights:
            raise UserError(
                f"no weights for {config.model!r} in this workspace: pass --weights FILE or run 'seernet pretrain'"
            )
        load_weights(model, config.weights, config.model)
    return model
