"""ONNX Runtime on the CPU: sessions, latency and predictions of exported models.

Assumptions, stated once:
- The CPU execution provider with every graph optimization on (that is what fuses
  ``DequantizeLinear -> Conv -> QuantizeLinear`` into integer QLinearConv kernels),
  ``threads`` intra-op threads (default 1) and one inter-op thread, sequential execution.
- Latency is the median of ``runs`` timed ``run`` calls after ``warmup`` untimed ones, on
  one fixed random input per batch size (a CNN's time does not depend on the values).
  Several models timed together take turns, one run each per round (``interleaved_times``):
  timed one after the other, the same float model measured 0.45-0.78 ms from one block to
  the next on a 2-core VM at load 1, a drift larger than the differences being compared. The
  thread count and the machine's 1-minute load average are recorded with every result:
  timings on a shared machine mean little without them.
- onnxruntime is an optional dependency (``pip install 'seernet[onnx]'``); code that needs it
  calls ``require_onnxruntime`` and gets one clear UserError when it is missing.
"""

from __future__ import annotations

import io
import os
import statistics
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from seernet.errors import UserError

RUNTIMES = ("torch", "onnxruntime")
DEFAULT_THREADS = 1
INSTALL_HINT = "pip install 'seernet[onnx]' (or pip install onnxruntime)"


def check_runtime(name: str) -> str:
    """``name`` if it is a known runtime, else a one-line UserError listing the known ones."""
    if name not in RUNTIMES:
        raise UserError(f"unknown runtime {name!r}: choose one of {', '.join(RUNTIMES)}")
    return name


def require_onnxruntime():  # the onnxruntime module
    """The onnxruntime module, or a one-line UserError saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise UserError(f"onnxruntime is not installed: {INSTALL_HINT}") from exc
    return onnxruntime


def has_onnxruntime() -> bool:
    """Whether onnxruntime (and onnx, which the exports need) can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def session(
    model: bytes | Path, threads: int = DEFAULT_THREADS, profile_prefix: str | None = None
):  # an InferenceSession
    """A CPU InferenceSession of an ONNX file or serialized model, all graph optimizations on;
    with ``profile_prefix``, ORT's profiler writes its trace there (``end_profiling``)."""
    ort = require_onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # warnings about serialising optimized graphs are not ours
    if profile_prefix is not None:
        opts.enable_profiling, opts.profile_file_prefix = True, profile_prefix
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def float_onnx(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """A float model as serialized ONNX (opset 17, dynamic batch), for timing in ORT."""
    import copy

    model = copy.deepcopy(model).cpu().eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(model, (torch.zeros((2, *input_shape[1:])),), buf, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})  # fmt: skip
    return buf.getvalue()


def time_session(sess, x: np.ndarray, runs: int, warmup: int) -> list[float]:
    """Milliseconds of each of ``runs`` timed runs of ``sess`` on ``x``."""
    return interleaved_times({"model": sess}, x, runs, warmup)["model"]


def interleaved_times(
    sessions: Mapping[str, Any], x: np.ndarray, runs: int, warmup: int
) -> dict[str, list[float]]:
    """Milliseconds of ``runs`` timed runs of every session on ``x``, taken in rounds of one
    turn per session (each round starting one session later), so that a slow stretch of the
    machine hits every model alike. A turn is an untimed run, then the timed one, so that
    each timed run finds its model's weights and buffers in the caches, as a model deployed
    alone does. (A direct check found no effect of the company beyond this VM's drift: the
    unpruned ResNet-20 read 0.33-0.43 ms alone and among 1, 5, 11, 24 or 48 other models,
    in no order; the untimed run is kept as the safe side.)"""
    return interleaved_feeds(sessions, dict.fromkeys(sessions, x), runs, warmup)


def interleaved_feeds(
    sessions: Mapping[str, Any], inputs: Mapping[str, np.ndarray], runs: int, warmup: int
) -> dict[str, list[float]]:
    """``interleaved_times`` with each session on its own input (``inputs[name]``)."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got {runs}, {warmup}")
    feeds = {name: {s.get_inputs()[0].name: inputs[name]} for name, s in sessions.items()}
    for _ in range(warmup):
        for name, s in sessions.items():
            s.run(None, feeds[name])
    times: dict[str, list[float]] = {name: [] for name in sessions}
    order = list(sessions.items())
    for r in range(runs):
        # Each round starts one session later: the first run of a round was measured slower
        # (a first ORT block timed 42 us where its neighbours took 35), which rotating shares out.
        for name, s in order[r % len(order) :] + order[: r % len(order)]:
            s.run(None, feeds[name])  # untimed: the timed run finds this model in the caches
            start = time.perf_counter()
            s.run(None, feeds[name])
            times[name].append(1e3 * (time.perf_counter() - start))
    return times


def paired_ratio(times: list[float], reference: list[float]) -> float:
    """Median over rounds of a model's time over a reference model's in the same round of
    ``interleaved_times``: the two runs of a round are adjacent, so the machine's drift
    cancels pair by pair. Timed 8 times, 100 rounds each, a pruned model's share of the
    unpruned one spread 2-9x less this way than as the ratio of the two medians (std
    0.002-0.006 against 0.008-0.018)."""
    if len(times) != len(reference) or not times:
        raise ValueError(f"need paired runs, got {len(times)} and {len(reference)}")
    return float(np.median(np.asarray(times) / np.asarray(reference)))


def summary(times: list[float]) -> dict:
    """Median, min and max milliseconds of timed runs, and their number."""
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "runs": len(times)}  # fmt: skip


def random_input(input_shape: tuple[int, ...], batch_size: int) -> np.ndarray:
    """The fixed (seeded) random input of one batch size."""
    return (
        np.random.default_rng(0).standard_normal((batch_size, *input_shape[1:])).astype(np.float32)
    )


def session_latency(
    sess, input_shape: tuple[int, ...], batch_size: int, runs: int = 20, warmup: int = 3
) -> dict:
    """Median, min and max milliseconds of one run at ``batch_size``."""
    return summary(time_session(sess, random_input(input_shape, batch_size), runs, warmup))


def load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS does not say)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def ort_latency_table(
    models: Mapping[str, bytes | Path], input_shape: tuple[int, ...], batch_sizes: Iterable[int] = (1, 64),
    runs: int = 20, threads: int = DEFAULT_THREADS, warmup: int = 3,
) -> dict[str, Any]:  # fmt: skip
    """ORT CPU latency of every named ONNX model at every batch size (the models timed in
    turn, ``interleaved_times``), with threads and load."""
    batch_sizes = list(batch_sizes)
    load_before = load_average()
    sessions = {name: session(m, threads) for name, m in models.items()}
    table: dict[str, dict] = {name: {} for name in models}
    for b in batch_sizes:
        times = interleaved_times(sessions, random_input(input_shape, b), runs, warmup)
        for name, t in times.items():
            table[name][str(b)] = summary(t)
    return {"runtime": "onnxruntime", "version": require_onnxruntime().__version__, "device": "cpu",
            "threads": threads, "batch_sizes": batch_sizes, "models": table,
            "load_average_1min": {"before": load_before, "after": load_average()}}  # fmt: skip


def predictions(sess, data: Dataset, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 class, label) of every item of ``data`` through an ORT session."""
    from seernet.data.loaders import batches

    name = sess.get_inputs()[0].name
    preds, labels = [], []
    for x, y in batches(data, batch_size):
        preds.append(sess.run(None, {name: x.numpy()})[0].argmax(1))
        labels.append(y.numpy())
    return np.concatenate(preds), np.concatenate(labels)


@torch.no_grad()
def torch_predictions(
    model: nn.Module, data: Dataset, device: torch.device, batch_size: int = 256
) -> np.ndarray:
    """Top-1 class of every item of ``data`` through a torch model (eval mode)."""
    from seernet.data.loaders import batches

    model.eval()
    return np.concatenate(
        [model(x.to(device)).argmax(1).cpu().numpy() for x, _ in batches(data, batch_size)]
    )
