"""Train the base model from scratch: one-cycle SGD with light augmentation, seeded."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from seernet.data.datasets import DataSplits
from seernet.data.loaders import batches
from seernet.data.train import one_cycle_lr, sgd, train_steps


@dataclass(frozen=True)
class PretrainSettings:
    """Hyper-parameters of ``seernet pretrain`` (the defaults made the shipped model)."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.2
    weight_decay: float = 5e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch size must be >= 1 and lr > 0")


def pretrain(
    model: nn.Module, splits: DataSplits, settings: PretrainSettings, device: torch.device
) -> dict[str, float | list[float]]:
    """Train ``model`` in place; returns val accuracy per epoch, test accuracy and seconds."""
    torch.manual_seed(settings.seed)
    model.to(device)
    loader = batches(
        splits.train,
        settings.batch_size,
        shuffle=True,
        seed=settings.seed,
        train_augment=splits.augment,
    )
    total = settings.epochs * len(loader)
    opt = sgd(model, settings.lr, settings.weight_decay)
    start, val_history = time.perf_counter(), []
    with tqdm(total=total, desc="pretrain", unit="step", dynamic_ncols=True) as bar:
        for epoch in range(settings.epochs):
            offset = epoch * len(loader)
            train_steps(
                model, loader, device, opt,
                lambda s, o=offset: one_cycle_lr(o + s, total, settings.lr), len(loader), bar,
                loss_fn=splits.task.criterion,
            )  # fmt: skip
            val_history.append(splits.task.score(model, splits.val, device))
            # stderr, like the bar: stdout carries only the command's result (``--json``)
            bar.write(
                f"epoch {epoch + 1}/{settings.epochs}: val accuracy {val_history[-1]:.2f}%",
                file=sys.stderr,
            )
    return {
        "val_accuracy": val_history,
        "test_accuracy": splits.task.score(model, splits.test, device),
        "seconds": time.perf_counter() - start,
    }
