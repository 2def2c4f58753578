"""LAP timings in ONNX Runtime: single layers and whole models in their QDQ form.

What is measured, stated once:
- Every bit-width of a policy space (2..8) runs on the same ORT kernels: a b-bit layer keeps
  its codes inside int8/uint8 (``seernet.compression.onnx_qdq``), so ORT's integer kernels do the same
  work at 2 and at 8 bits. What changes the kernel is quantized vs float, so a layer is timed
  twice per grid point: as QDQ (8-bit weights and input) and as a float layer.
- A layer is timed as it runs inside the model: a conv whose output the model quantizes again
  (its output goes, after BN and ReLU, only into the next layer's input quantizer) is timed
  with that output quantizer, which lets ORT fuse it into one integer QLinearConv; a conv whose
  output stays float (it feeds a residual add or the logits) is timed without, as ORT then
  runs it: a float conv on the dequantized input. Which layers are which is read from the
  QDQ graph of the unpruned model, exported with the table's ``qdq_residuals`` (by default
  the exact form ``seernet compress`` writes; with "int8", residual-branch convs are integer
  ones too).
- Weights and activation scales are random (calibrated on random inputs): they do not change
  ORT's kernels or their time.
"""

from __future__ import annotations

import copy
import statistics

import torch
from torch import nn

from seernet.compression.onnx_qdq import QuantizeInput, consumers, export_qdq, requantized
from seernet.compression.onnx_residuals import DEFAULT_RESIDUALS
from seernet.compression.ort_runtime import (
    float_onnx,
    interleaved_feeds,
    interleaved_times,
    random_input,
    session,
    time_session,
)
from seernet.compression.quant import calibrate_, quantize_
from seernet.space.policy import Policy, PolicySpace


class OutputQuant(nn.Module):
    """The next layer's 8-bit unsigned input quantizer, appended to a timed block (QDQ in ONNX)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return QuantizeInput.apply(x, 0.05, 0, 255, False)


def _qdq_bytes(model: nn.Module, x: torch.Tensor, residuals: str = "float") -> bytes:
    """A fake-quant model as serialized QDQ ONNX (through a temporary file: export_qdq writes files)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.qdq.onnx"
        calibration = torch.randn((8, *x.shape[1:]), generator=torch.Generator().manual_seed(0))
        export_qdq(model, x, path, residuals, calibration)
        return path.read_bytes()


def quantized_model(
    model: nn.Module, space: PolicySpace, policy: Policy, seed: int = 0
) -> nn.Module:
    """``model`` pruned and fake-quantized as ``policy`` says, calibrated on random inputs (eval mode)."""
    from seernet.compression.prune import prune_model

    pruned = prune_model(model, space, policy, "l1")  # shapes, not which channels, set the latency
    quantize_(pruned, policy.bits)
    gen = torch.Generator().manual_seed(seed)
    calibrate_(pruned, [torch.randn((8, *space.input_shape[1:]), generator=gen)])
    return pruned.eval()


def requantized_layers(
    model: nn.Module, space: PolicySpace, residuals: str = DEFAULT_RESIDUALS
) -> set[str]:
    """Layers whose output the model's QDQ form quantizes again (ORT runs them as QLinearConv)."""
    import onnx

    qmodel = quantized_model(model, space, space.full_policy())
    graph = onnx.load_from_string(
        _qdq_bytes(qmodel, torch.zeros(space.input_shape), residuals)
    ).graph
    names = [ly.name for ly in space.quant_layers]
    users = consumers(graph)
    out = set()
    for n in graph.node:
        if n.op_type in ("Conv", "Gemm") and requantized(n, users):
            # The exporter names nodes by module scope ("/layers/layers.0/conv1/Conv"): the longest
            # layer name the scope ends with is the layer.
            scope = "." + n.name.rsplit("/", 1)[0].replace("/", ".")
            found = [name for name in names if scope.endswith("." + name)]
            if found:
                out.add(max(found, key=len))
    return out


def block_onnx(block: nn.Module, x: torch.Tensor, quantized: bool, requantize: bool) -> bytes:
    """One layer block (from ``seernet.latency.table``) as ONNX: QDQ (8-bit input and weight,
    with the next layer's input quantizer when ``requantize``) or float."""
    block = copy.deepcopy(block).eval()
    if not quantized:
        return float_onnx(block, tuple(x.shape))
    first = "0" if isinstance(block, nn.Sequential) else ""
    if first:
        quantize_(block, {first: (8, 8)})
    else:  # a bare Linear: wrap it so it has a name to quantize
        block = quantize_(nn.Sequential(block), {"0": (8, 8)})
    calibrate_(block, [x])
    if requantize:
        block = nn.Sequential(*block, OutputQuant())
    return _qdq_bytes(block.eval(), x)


def blocks_ms(
    blocks: list[nn.Module], xs: list[torch.Tensor], quantized: bool, requantize: bool, repeats: int, warmup: int,
    threads: int,
) -> list[float]:  # fmt: skip
    """Median ms in ORT of each block on its input, the blocks timed in turn (one run each
    per round, ``interleaved_times``), so that a slow stretch of the machine hits all alike."""
    sessions = {str(i): session(block_onnx(b, x, quantized, requantize), threads)
                for i, (b, x) in enumerate(zip(blocks, xs, strict=True))}  # fmt: skip
    feeds = {str(i): x.numpy() for i, x in enumerate(xs)}
    times = interleaved_feeds(sessions, feeds, repeats, warmup)
    return [statistics.median(times[str(i)]) for i in range(len(blocks))]


def policy_qdq(
    model: nn.Module, space: PolicySpace, policy: Policy, residuals: str = DEFAULT_RESIDUALS
) -> bytes:
    """``policy``'s pruned model in QDQ form as serialized ONNX (random calibration: the
    shapes and bits, not the weights, set its speed)."""
    x2 = torch.zeros((2, *space.input_shape[1:]))
    return _qdq_bytes(quantized_model(model, space, policy), x2, residuals)


def model_ms(
    model: nn.Module, space: PolicySpace, policy: Policy, batch_size: int, runs: int, warmup: int, threads: int,
    residuals: str = DEFAULT_RESIDUALS,
) -> float:  # fmt: skip
    """Median ms in ORT of ``policy``'s pruned model in QDQ form (``residuals`` as in export_qdq) at ``batch_size``."""
    (times,) = models_times(model, space, [policy], batch_size, runs, warmup, threads, residuals)
    return statistics.median(times)


def models_times(
    model: nn.Module, space: PolicySpace, policies: list[Policy], batch_size: int, runs: int, warmup: int,
    threads: int, residuals: str = DEFAULT_RESIDUALS,
) -> list[list[float]]:  # fmt: skip
    """Every timed run (ms, in round order) of each policy's QDQ model, timed in turn."""
    sessions = {str(i): session(policy_qdq(model, space, p, residuals), threads)
                for i, p in enumerate(policies)}  # fmt: skip
    times = interleaved_times(sessions, random_input(space.input_shape, batch_size), runs, warmup)
    return [times[str(i)] for i in range(len(policies))]


def float_model_ms(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, runs: int, warmup: int,
                   threads: int) -> float:  # fmt: skip
    """Median ms in ORT of a float model at ``batch_size``."""
    data = float_onnx(model, input_shape)
    return statistics.median(
        time_session(session(data, threads), random_input(input_shape, batch_size), runs, warmup)
    )
