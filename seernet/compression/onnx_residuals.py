"""Integer residual branches for the QDQ export: the one place it departs from the simulation.

seernet's simulation quantizes the *inputs* of conv/linear layers only, so a conv whose output
feeds a residual add (the second conv of a ResNet block, a downsampling shortcut) has a float
output. ORT fuses a conv into an integer QLinearConv only when its output is quantized too, so
in the exact export those convs run as float convs on dequantized inputs, with layout changes
around them, and the QDQ model ran slower than the float pruned one (docs/deploy-onnxruntime.md).

``quantize_residual_branches_`` adds that output quantization: every conv whose output goes only
into Add nodes gets ``QuantizeLinear -> DequantizeLinear`` at 8 bits, per tensor, zero point 0
(uint8 when the calibration outputs are non-negative, else int8), with the clip that minimises
the squared error on calibration images, chosen by ``seernet.compression.quant.best_act_range`` like every
other activation range. The residual sum itself stays float. This is an approximation of the
simulation (an 8-bit rounding of each branch before the add); ``seernet compress`` reports the
top-1 agreement of the result with the simulation on the test set.

No choice of range fixes that agreement. On the main job's mixed policy (4-bit inputs, ResNet-20,
Fashion-MNIST) the branches' 8-bit rounding moved 127 of 10,000 top-1 answers (98.66% agreement
against 99.93% exact), their clipping alone 1; ranges from 8x more calibration images moved
as many, per-channel ranges 114. The residual stream feeds low-bit quantizers in every block,
and an activation moved across a code boundary moves the ones after it: rounding the branches
at 1/256 of the 8-bit step still moved 70 answers, uniform noise of +-5e-5 on them 49. Only an
exact residual stream agrees, and ``residuals="float"`` is that form, now as fast
(``seernet.compression.onnx_qdq.float_weights_``).
"""

from __future__ import annotations

import numpy as np
import torch

from seernet.compression.onnx_qdq import GraphConstants, consumers, requantized, weight_dequantizer
from seernet.compression.quant import _DEFAULT_FRACTIONS, best_act_range

RESIDUAL_MODES = ("int8", "float")
# What ``compress`` writes and ``profile-latency --runtime onnxruntime`` times unless told:
# the exact form (99.7-99.99% top-1 agreement, as fast as int8 residuals; issue #24).
DEFAULT_RESIDUALS = "float"
_SAMPLES = 2**16  # values per tensor for the clip search, as in calibrate_


def residual_branches(graph) -> list:  # an onnx.GraphProto
    """QDQ-weight convs whose float output goes only into Add nodes."""
    users, consts, producers = (
        consumers(graph),
        GraphConstants(graph),
        {o: n for n in graph.node for o in n.output},
    )
    out = []
    for n in graph.node:
        nxt = users.get(n.output[0], []) if n.op_type == "Conv" else []
        branch = nxt and all(u.op_type == "Add" for u in nxt) and not requantized(n, users)
        if branch and weight_dequantizer(n, producers, consts) is not None:
            out.append(n)
    return out


def _values(model, names: list[str], calibration: np.ndarray) -> list[np.ndarray]:
    """The float values of graph tensors ``names`` on ``calibration`` inputs (ORT, no graph rewrites)."""
    import onnx

    from seernet.compression.ort_runtime import require_onnxruntime

    ort = require_onnxruntime()
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    opts = ort.SessionOptions()
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )  # the graph as written
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(names, {sess.get_inputs()[0].name: calibration.astype(np.float32)})


def quantize_residual_branches_(model, calibration: np.ndarray, seed: int = 0) -> int:
    """Quantize every residual-branch conv output at 8 bits (clip calibrated); returns the count."""
    from onnx import helper

    g = model.graph
    targets = residual_branches(g)
    if not targets:
        return 0
    values = _values(model, [n.output[0] for n in targets], calibration)
    consts, users = GraphConstants(g), consumers(g)
    gen = torch.Generator().manual_seed(seed)
    for node, value in zip(targets, values, strict=True):
        flat = torch.from_numpy(np.ascontiguousarray(value)).reshape(-1)
        sample = (
            flat[torch.randint(flat.numel(), (_SAMPLES,), generator=gen)]
            if flat.numel() > _SAMPLES
            else flat
        )
        scale, signed = best_act_range(
            sample, flat.min().item(), flat.max().item(), 8, _DEFAULT_FRACTIONS
        )
        name = node.output[0]
        s = consts.add(name + "_scale", np.array(scale, np.float32))
        z = consts.add(name + "_zero", np.array(0, np.int8 if signed else np.uint8))
        for u in users[name]:
            u.input[:] = [name + "_dq" if i == name else i for i in u.input]
        at = list(g.node).index(node) + 1  # right after the conv: the graph stays sorted
        g.node.insert(at, helper.make_node("DequantizeLinear", [name + "_q", s, z], [name + "_dq"]))
        g.node.insert(at, helper.make_node("QuantizeLinear", [name, s, z], [name + "_q"]))
    return len(targets)
