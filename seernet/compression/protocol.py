"""Measuring one policy: prune, adapt BatchNorm, quantize, short QAT fine-tune, val top-1.

The protocol is the proxy every sample is measured with; its defaults were chosen by
``benchmarks/bench_proxy.py`` (rank agreement with a long fine-tune versus seconds).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from itertools import islice

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from seernet.compression.criteria import builtin_criterion
from seernet.compression.prune import Criterion, prune_model
from seernet.compression.quant import WEIGHT_CLIPS, calibrate_, quantize_, set_lsq_
from seernet.data.datasets import DataSplits
from seernet.data.loaders import batches
from seernet.data.train import cosine_schedule, sgd, train_steps
from seernet.space.policy import Policy, PolicySpace


@dataclass(frozen=True)
class Protocol:
    """How a policy's accuracy is measured; stored with every sample store."""

    bn_batches: int = 8
    finetune_steps: int = 20
    batch_size: int = 128
    lr: float = 0.01
    weight_decay: float = 5e-4
    val_limit: int | None = None
    criterion: str = "l1"
    seed: int = 0
    weight_clip: str = (
        "mse"  # weight scales at calibration: least-squares clip, or "max" (the old rule)
    )
    # Learn the quantizers' step sizes in the fine-tuning steps (LSQ). Off: with 20 steps it
    # ranked policies worse against a compress-length fine-tune (bench_proxy.py --lsq off,on).
    lsq: bool = False

    def __post_init__(self) -> None:
        if self.bn_batches < 1 or self.finetune_steps < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(
                "protocol needs bn_batches >= 1, finetune_steps >= 0, batch_size >= 1, lr > 0"
            )
        if not isinstance(self.lsq, bool):
            raise ValueError(f"protocol lsq must be true or false, got {self.lsq!r}")
        if self.weight_clip not in WEIGHT_CLIPS:
            raise ValueError(
                f"protocol weight_clip must be one of {', '.join(WEIGHT_CLIPS)}, got {self.weight_clip!r}"
            )

    def to_json(self) -> dict:
        return asdict(self)


@torch.no_grad()
def adapt_batchnorm_(model: nn.Module, data, device: torch.device, n_batches: int) -> None:
    """Re-estimate BatchNorm running statistics on ``n_batches`` (exact average: torch's ``update_bn``)."""
    update_bn(islice(data, n_batches), model, device)
    model.eval()


def build_compressed(
    base: nn.Module, space: PolicySpace, policy: Policy, splits: DataSplits, protocol: Protocol,
    device: torch.device, criterion: Criterion | None = None,
) -> nn.Module:  # fmt: skip
    """Pruned, BN-adapted, quantized and calibrated model (before any fine-tuning).

    ``criterion``: ``ctx.criterion(protocol.criterion)``; None resolves a built-in name
    (a learned one needs its workspace, so it must be passed).
    """
    if criterion is None:
        criterion = builtin_criterion(protocol.criterion)
    model = prune_model(base, space, policy, criterion, protocol.seed).to(device)
    calib = batches(splits.train, protocol.batch_size, shuffle=True, seed=protocol.seed)
    adapt_batchnorm_(model, calib, device, protocol.bn_batches)
    quantize_(model, policy.bits)
    calibrate_(model, calib, num_batches=2, seed=protocol.seed, weight_clip=protocol.weight_clip)
    adapt_batchnorm_(model, calib, device, protocol.bn_batches)
    return model


def finetune_(
    model: nn.Module, splits: DataSplits, steps: int, protocol: Protocol, device: torch.device, bar=None,
) -> None:  # fmt: skip
    """Quantization-aware fine-tuning for ``steps`` SGD steps on a cosine schedule (seeded).

    With ``protocol.lsq`` the step sizes are learned too; they are frozen again at the end.
    """
    if steps <= 0:
        return
    torch.manual_seed(protocol.seed)
    data = batches(
        splits.train,
        protocol.batch_size,
        shuffle=True,
        seed=protocol.seed + 1,
        train_augment=splits.augment,
    )
    set_lsq_(model, protocol.lsq)
    opt = sgd(model, protocol.lr, protocol.weight_decay)
    train_steps(model, data, device, opt, cosine_schedule(opt, steps), steps, bar,
                loss_fn=splits.task.criterion)  # fmt: skip
    set_lsq_(model, False)
    model.eval()


def evaluate_policy(
    base: nn.Module, space: PolicySpace, policy: Policy, splits: DataSplits, protocol: Protocol,
    device: torch.device, criterion: Criterion | None = None,
) -> tuple[float, float]:  # fmt: skip
    """The measured val metric of ``policy`` under ``protocol`` (top-1 % by default, the
    splits' task otherwise), and the seconds it took."""
    start = time.perf_counter()
    model = build_compressed(base, space, policy, splits, protocol, device, criterion)
    finetune_(model, splits, protocol.finetune_steps, protocol, device)
    acc = splits.task.score(model, splits.val, device, limit=protocol.val_limit)
    return acc, time.perf_counter() - start
