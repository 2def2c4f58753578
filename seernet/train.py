"""Training and top-1 evaluation loops shared by pretraining, evaluation and fine-tuning."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from seernet.loaders import batches


@torch.no_grad()
def accuracy(
    model: nn.Module,
    data: Dataset,
    device: torch.device,
    batch_size: int = 512,
    limit: int | None = None,
) -> float:
    """Top-1 accuracy in percent over ``data`` (its first ``limit`` items if given)."""
    model.eval()
    correct = total = 0
    for x, y in batches(data, batch_size, limit=limit):
        pred = model(x.to(device)).argmax(1)
        correct += int((pred == y.to(device)).sum())
        total += len(y)
    return 100.0 * correct / max(total, 1)


def one_cycle_lr(step: int, total: int, peak: float, warmup_frac: float = 0.15) -> float:
    """Linear warm-up to ``peak`` then cosine decay to ~0 (one-cycle)."""
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_lr(step: int, total: int, peak: float) -> float:
    """Cosine decay from ``peak`` to 0 over ``total`` steps (fine-tuning)."""
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))


def sgd(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.SGD:
    """SGD with Nesterov momentum; no weight decay on BatchNorm and biases."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)


def train_steps(
    model: nn.Module,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    optimizer: torch.optim.Optimizer,
    lr_at: callable,
    steps: int,
    bar: tqdm | None = None,
) -> float:
    """Run ``steps`` optimisation steps cycling over ``data``; returns the mean loss."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    done, total_loss = 0, 0.0
    while done < steps:
        for x, y in data:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(done)
            loss = loss_fn(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            done += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total_loss / done:.3f}", refresh=False)
            if done >= steps:
                break
    return total_loss / max(done, 1)
