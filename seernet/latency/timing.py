"""Inference latency: warm-up runs, then the median of repeated timed forward passes.

Assumptions, stated once:
- On the CPU by default (CUDA when asked, synchronising around every timed pass), in eval
  mode under ``torch.no_grad``, with the thread count torch has when called
  (``OMP_NUM_THREADS``, or ``predictor.device.torch_threads(n)``); that count is recorded with every result,
  since latency on a shared or differently threaded machine is not comparable.
- One fixed random input per batch size; CNN latency does not depend on the values.
- The median over runs, in milliseconds, resists the odd run slowed by other processes.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Iterable, Mapping

import torch
from torch import nn


@torch.no_grad()
def time_forward(model: nn.Module, x: torch.Tensor, runs: int, warmup: int) -> list[float]:
    """Milliseconds of each of ``runs`` forward passes of ``x`` (model and x on one device)."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got {runs}, {warmup}")
    cuda = x.device.type == "cuda"
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        if cuda:  # kernels are asynchronous: time only finished work
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        model(x)
        if cuda:
            torch.cuda.synchronize(x.device)
        times.append(1e3 * (time.perf_counter() - start))
    return times


def measure_latency(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, runs: int = 20, warmup: int = 3,
    device: torch.device | str = "cpu",
) -> dict[str, float | int]:  # fmt: skip
    """Median, min and max milliseconds of one forward pass of ``batch_size`` inputs."""
    model = copy.deepcopy(model).to(device).eval()
    x = torch.randn((batch_size, *input_shape[1:]), generator=torch.Generator().manual_seed(0)).to(
        device
    )
    times = time_forward(model, x, runs, warmup)
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "runs": runs,
    }


def latency_table(
    models: Mapping[str, nn.Module], input_shape: tuple[int, ...], batch_sizes: Iterable[int] = (1, 64),
    runs: int = 20,
) -> dict[str, object]:  # fmt: skip
    """CPU latency of every named model at every batch size, with the thread count used."""
    batch_sizes = list(batch_sizes)
    return {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "batch_sizes": batch_sizes,
        "models": {
            name: {str(b): measure_latency(m, input_shape, b, runs) for b in batch_sizes}
            for name, m in models.items()
        },
    }
