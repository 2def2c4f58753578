"""An independent MAC/parameter counter that runs the model (forward hooks).

It counts one multiply-accumulate as one FLOP, the compression literature's
convention, for Conv2d, ConvTranspose2d and Linear layers only (every call of a module
called more than once per forward): BatchNorm, activations, pooling and
residual additions are not counted (they are a tiny fraction and vanish when folded).
It is the ground truth that the analytic cost model is tested against.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_linear_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """MACs per Conv2d/ConvTranspose2d/Linear module name for one input of ``input_shape``
    (batch 1)."""
    counts: dict[str, int] = {}
    hooks = []

    def hook(name: str):  # returns a forward hook
        def count(
            module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
        ) -> None:
            per_sample = output.numel() // output.shape[0]
            if isinstance(module, nn.ConvTranspose2d):  # every input pixel meets the kernel
                k = module.kernel_size[0] * module.kernel_size[1]
                macs = (
                    inputs[0].numel()
                    // inputs[0].shape[0]
                    * (module.out_channels // module.groups)
                    * k
                )
            elif isinstance(module, nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1]
                macs = per_sample * (module.in_channels // module.groups) * k
            else:
                macs = per_sample * module.in_features
            counts[name] = counts.get(name, 0) + macs

        return count

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return counts


def count_macs_params(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """Total MACs (batch 1) and learnable parameters of ``model``."""
    macs = sum(conv_linear_macs(model, input_shape).values())
    return macs, sum(p.numel() for p in model.parameters())
