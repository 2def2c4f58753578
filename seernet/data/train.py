"""Training and top-1 evaluation loops shared by pretraining, evaluation and fine-tuning."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from torch.utils.data import Dataset
from tqdm import tqdm

from seernet.data.task import CLASSIFICATION, Loss, to_device


def accuracy(
    model: nn.Module,
    data: Dataset,
    device: torch.device,
    batch_size: int = 512,
    limit: int | None = None,
) -> float:
    """Top-1 accuracy in percent over ``data`` (its first ``limit`` items if given)."""
    return CLASSIFICATION.score(model, data, device, limit, batch_size)


def one_cycle_lr(step: int, total: int, peak: float, warmup_frac: float = 0.15) -> float:
    """Linear warm-up to ``peak`` then cosine decay to ~0 (one-cycle).

    Kept by hand: ``OneCycleLR`` anneals warm-up and decay with one strategy (both cos or
    both linear) and cycles momentum, and as a ``LambdaLR`` factor the warm-up lrs would
    move by an ulp (``peak * (s + 1) / warm`` is not ``peak * ((s + 1) / warm)``), so a
    rerun would no longer reproduce the shipped checkpoint's training bit for bit.
    """
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_factor(step: int, total: int) -> float:
    """Cosine decay from 1 to 0 over ``total`` steps (held at 0 after)."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))


def cosine_lr(step: int, total: int, peak: float) -> float:
    """Cosine decay from ``peak`` to 0 over ``total`` steps (fine-tuning)."""
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))


def cosine_schedule(optimizer: torch.optim.Optimizer, total: int) -> LambdaLR:
    """``cosine_lr`` as torch's ``LambdaLR`` from the optimizer's lr (the same floats: the 0.5 is exact)."""
    return LambdaLR(optimizer, lambda step: cosine_factor(step, total))


def sgd(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.SGD:
    """SGD with Nesterov momentum; no weight decay on BatchNorm and biases."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)


def distill_loss(
    logits: Tensor, teacher_logits: Tensor, y: Tensor, weight: float, temperature: float
) -> Tensor:
    """(1 - weight) x cross-entropy on labels + weight x T^2 x KL(teacher || student) at temperature T.

    T^2 keeps the soft term's gradient on the scale of the hard one (Hinton et al. 2015).
    """
    ce = F.cross_entropy(logits, y)
    if weight == 0.0:
        return ce
    t = temperature
    soft = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher_logits / t, 1), reduction="batchmean",
                    log_target=True)  # fmt: skip
    return (1.0 - weight) * ce + weight * t * t * soft


def train_steps(
    model: nn.Module,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    optimizer: torch.optim.Optimizer,
    lr_at: LRScheduler | Callable[[int], float],
    steps: int,
    bar: tqdm | None = None,
    teacher: nn.Module | None = None,
    distill: float = 0.0,
    temperature: float = 4.0,
    loss_fn: Loss | None = None,
) -> float:
    """Run ``steps`` optimisation steps cycling over ``data``; returns the mean loss.

    ``lr_at``: a torch scheduler of ``optimizer`` (stepped after every step), or a function
    step -> learning rate set before every step (``one_cycle_lr``, ``compress``'s chunks).

    With a ``teacher`` and ``distill`` > 0 the loss is ``distill_loss`` against the
    teacher's logits on the same (augmented) batch; the teacher runs in eval mode.
    ``loss_fn`` (outputs, targets) -> loss replaces cross-entropy (a user's task).
    """
    model.train()
    use_teacher = teacher is not None and distill > 0.0
    teacher_mode = teacher.training if use_teacher else False
    if use_teacher:
        teacher.eval()
    scheduler = lr_at if isinstance(lr_at, LRScheduler) else None
    done, total_loss = 0, 0.0
    while done < steps:
        for x, y in data:
            if scheduler is None:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(done)
            x, y = x.to(device), to_device(y, device)
            with torch.no_grad():
                soft = teacher(x) if use_teacher else None
            logits = model(x)
            loss = (
                distill_loss(logits, soft, y, distill, temperature)
                if use_teacher
                else (loss_fn or F.cross_entropy)(logits, y)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total_loss += loss.item()
            done += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total_loss / done:.3f}", refresh=False)
            if done >= steps:
                break
    if use_teacher:
        teacher.train(teacher_mode)
    return total_loss / max(done, 1)
