"""What "better" means for a model: the metric that scores it and the loss that fine-tunes it.

The defaults are image classification's: top-1 accuracy in percent and cross-entropy. A
user's own task gives ``metric(model, batches) -> float`` (higher is better; ``batches``
yields ``(inputs, targets)`` already on the model's device) and ``loss(outputs, targets)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from seernet.data.loaders import batches
from seernet.errors import UserError

Batches = Iterable[tuple[Tensor, Tensor]]
Metric = Callable[[nn.Module, Batches], float]
Loss = Callable[[Tensor, Tensor], Tensor]
EVAL_BATCH = 512


def top1(model: nn.Module, data: Batches) -> float:
    """Top-1 accuracy in percent (the default metric)."""
    correct = total = 0
    for x, y in data:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return 100.0 * correct / max(total, 1)


@dataclass(frozen=True)
class Task:
    """The metric and the fine-tuning loss; None means the classification default."""

    metric: Metric | None = None
    loss: Loss | None = None

    @property
    def is_classification(self) -> bool:
        """Both defaults: labels are class indices, so top-1 agreement and distillation apply."""
        return self.metric is None and self.loss is None

    def criterion(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The fine-tuning loss of one batch (mean over the batch)."""
        return (
            F.cross_entropy(outputs, targets) if self.loss is None else self.loss(outputs, targets)
        )

    @torch.no_grad()
    def score(
        self, model: nn.Module, data: Dataset, device: torch.device, limit: int | None = None,
        batch_size: int = EVAL_BATCH,
    ) -> float:  # fmt: skip
        """The metric of ``model`` (put in eval mode) over ``data`` (its first ``limit`` items)."""
        model.eval()
        on_device = _on_device(batches(data, batch_size, limit=limit), device)
        if self.metric is None:
            return top1(model, on_device)
        try:
            value = self.metric(model, on_device)
        except UserError:
            raise
        except Exception as exc:  # the user's code: say where, in one line
            raise UserError(f"the metric raised {type(exc).__name__}: {exc}") from exc
        try:
            value = float(value)
        except (TypeError, ValueError) as exc:
            raise UserError(f"the metric returned {value!r}, not a number") from exc
        if not math.isfinite(value):
            raise UserError(
                f"the metric returned {value}: it must be a finite number (higher is better)"
            )
        return value


def _on_device(data: Batches, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    for x, y in data:
        yield x.to(device), to_device(y, device)


def to_device(y, device: torch.device):  # a tensor, or a structure of them
    """Targets moved to ``device``: a tensor, or a list, tuple or dict of them."""
    if isinstance(y, Tensor):
        return y.to(device)
    if isinstance(y, (list, tuple)):
        return type(y)(to_device(v, device) for v in y)
    if isinstance(y, dict):
        return {k: to_device(v, device) for k, v in y.items()}
    return y


CLASSIFICATION = Task()
