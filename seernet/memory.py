"""Refuse a batch that would not fit in memory, before the kernel's OOM killer decides.

Estimate, stated once: one forward pass at batch 1 records the size of every leaf
module's output. Training keeps all of them for the backward pass, while the backward
holds the gradients of about two layers' outputs at a time, so a training batch of B
needs about ``B * (sum(outputs) + 2 * max(output)) * 4`` bytes, plus four float copies
of the parameters (weights, gradients, momentum, a spare); evaluation keeps at most two
layers' outputs alive, so ``2 * B * max(output) * 4`` plus the parameters. In-place
ReLUs share memory, so the estimate errs high, which is the safe side for a refusal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from seernet.errors import UserError

_FLOAT = 4
_HEADROOM = 0.8  # leave a fifth of what is free to the rest of the process and the OS
EVAL_BATCH = 512  # the batch of seernet.data.train.accuracy (named in the refusal too)


@dataclass(frozen=True)
class Footprint:
    """Bytes per image of the activations, and bytes of the parameters."""

    sum_outputs: int
    max_output: int
    params: int

    def training(self, batch: int) -> int:
        return batch * (self.sum_outputs + 2 * self.max_output) * _FLOAT + 4 * self.params * _FLOAT

    def inference(self, batch: int) -> int:
        return 2 * batch * self.max_output * _FLOAT + self.params * _FLOAT


@torch.no_grad()
def footprint(model: nn.Module, input_shape: tuple[int, ...]) -> Footprint:
    """Measure a batch-1 forward's outputs on ``model``'s device (small by construction)."""
    sizes: list[int] = []
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(_numel(out))) for m in leaves]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()(torch.zeros((1, *input_shape[1:]), device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return Footprint(sum(sizes), max(sizes, default=0), params)


def _numel(out: object) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel()
    return sum(_numel(o) for o in out) if isinstance(out, tuple | list) else 0


def available_bytes(device: torch.device) -> int:
    """Free memory where the batch will live: the GPU's, or the machine's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_batch_fits(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, training: bool, device: torch.device
) -> None:  # fmt: skip
    """A UserError naming the batch, the estimate and what to change if it would not fit."""
    fp = footprint(model, input_shape)
    need = fp.training(batch_size) if training else fp.inference(batch_size)
    have = available_bytes(device)
    if need > _HEADROOM * have:
        h, w = input_shape[-2:]
        raise UserError(
            f"batch {batch_size} at {h}x{w} needs ~{need / 1e9:.1f} GB to {'train' if training else 'evaluate'}, "
            f"this machine has {have / 1e9:.1f} GB free; use "
            + (
                "--batch-size or --image-size"
                if training
                else "--image-size (evaluation runs batches of 512)"
            )
        )


def check_run_fits(
    model: nn.Module, input_shape: tuple[int, ...], device: torch.device, train_batch: int | None
) -> None:  # fmt: skip
    """Refuse before any work when training at ``train_batch`` or evaluating would not fit."""
    if train_batch is not None:
        check_batch_fits(model, input_shape, train_batch, True, device)
    check_batch_fits(model, input_shape, EVAL_BATCH, False, device)
