"""QDQ ONNX export: a fake-quantized model in the standard form ONNX Runtime runs on integer kernels.

What ``model.qdq.onnx`` holds, stated once:
- Every quantized Conv2d/Linear reads its weight through ``DequantizeLinear(codes, scale,
  axis=0)``: int8 codes, the codes of ``seernet.compression.quant`` (a layer at b < 8 bits keeps its
  2^b - 1 levels, scaled as below), one float32 scale per output channel, zero point 0.
- Every quantized input is ``QuantizeLinear -> [Clip] -> DequantizeLinear`` per tensor with
  zero point 0: uint8 for unsigned inputs (after a ReLU), int8 for signed ones. The integer
  ``Clip`` keeps the layer's b-bit code range (and the symmetric signed range -127..127) inside
  the 8-bit container; it is left out where the container's own saturation is the range
  (8-bit unsigned).
- BatchNorm right after a quantized conv is folded into it: the per-channel factor
  gamma / sqrt(var + eps) multiplies the weight scales (a negative factor flips the codes'
  sign instead, the codes stay integers), and the shift becomes the conv's bias.
- A bias of a layer that ORT can run as one integer op (quantized input and weight, output
  only into the next quantizer) is stored as int32 codes at scale input scale x weight scale,
  the form ORT's QLinearConv takes; every other bias stays float. At b < 8 input bits that
  product is coarse (a 2-bit input step is large), and the per-channel rounding of the bias,
  a systematic shift, moved 2% of top-1 answers on a mixed-bit ResNet-20. So b-bit values
  are re-expressed exactly on a 2^(8-b) times finer grid (codes times a power of two, scale
  divided by it, still inside the container): weights in the stored codes, inputs by
  ``DequantizeLinear -> QuantizeLinear -> DequantizeLinear``. The bias rounding is then as
  small as at 8 bits, well under one step of the next layer's input. (So the stored int8
  codes of a b-bit weight are its b-bit codes times 2^(8-b), e.g. multiples of 64 at 2 bits.)
- A conv of the residual stream that ORT runs in float (the residual branches with
  ``residuals="float"``, below; a stem whose output also feeds an identity shortcut) holds its
  weight as a float32 initializer instead: the values its DequantizeLinear would compute, bit for bit
  (``float_weights_``). ORT never constant-folds a DequantizeLinear in a QDQ model, and a float
  conv with a non-constant weight dequantizes it every run and cannot be prepacked or run in
  ORT's blocked float layout (1.3-3x slower per conv here). The file is larger by 3 bytes per
  such weight; ``packed.bin`` keeps the codes.
- Weights stay in the int8 container at every bit-width: ONNX opset 21 can store int4
  weights and ONNX Runtime can dequantize them, but its CPU provider fuses only 8-bit weights
  into integer Conv kernels (int4 weights are fused for MatMul alone, into MatMulNBits), so a
  4-bit conv weight in int4 storage would run as a float conv.

ORT's graph optimizer turns ``DequantizeLinear -> Conv [-> Relu] -> QuantizeLinear`` into one
integer QLinearConv. A conv whose output the simulation keeps in float (it feeds a residual
add, or the logits) is not followed by a QuantizeLinear and runs as a float conv on the
dequantized input: with ``residuals="float"`` the file computes what seernet simulates (up to
float rounding and the int32 biases above) and, with its float weights constant, runs as fast
as the int8 form. ``residuals="int8"`` quantizes those residual-branch outputs at 8 bits so that
ORT runs every such conv on integer kernels too (``seernet.compression.onnx_residuals``): an
approximation, measured (docs/deploy-onnxruntime.md).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seernet.compression.packing import export_codes
from seernet.compression.quant import FakeQuant, act_qrange, quant_layers, weight_qrange

OPSET = 17  # per-channel DequantizeLinear needs 13; 17 matches model.onnx


class QuantizeInput(torch.autograd.Function):
    """Per-tensor input quantization: computed as seernet simulates it, exported as Q -> Clip -> DQ."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float, lo: int, hi: int, signed: bool) -> Tensor:
        s = torch.tensor(scale, dtype=torch.float32)
        return x.mul(s.reciprocal()).round().clamp(lo, hi).mul(s)

    @staticmethod
    def symbolic(g, x, scale: float, lo: int, hi: int, signed: bool):
        dtype = torch.int8 if signed else torch.uint8
        const = lambda v, t: g.op("Constant", value_t=torch.tensor(v, dtype=t))  # noqa: E731
        q = g.op("QuantizeLinear", x, const(scale, torch.float32), const(0, dtype))
        info = torch.iinfo(dtype)
        if (lo, hi) != (info.min, info.max):  # the container saturates at its own bounds only
            q = g.op("Clip", q, const(lo, dtype), const(hi, dtype))
        x = g.op("DequantizeLinear", q, const(scale, torch.float32), const(0, dtype))
        k = fine_factor(lo, hi, signed)
        if k == 1:
            return x
        # The same values on a k times finer grid: the consumer's int32 bias gets k times the resolution.
        fine = const(scale / k, torch.float32)
        return g.op(
            "DequantizeLinear",
            g.op("QuantizeLinear", x, fine, const(0, dtype)),
            fine,
            const(0, dtype),
        )


def fine_factor(lo: int, hi: int, signed: bool) -> int:
    """Largest power of two k with k x (b-bit codes) still inside the 8-bit container."""
    top = 127 if signed else 255
    k = 1
    while 2 * k * max(abs(lo), abs(hi)) <= top:
        k *= 2
    return k


class _DequantizeWeight(torch.autograd.Function):
    """Per-output-channel weight ``codes x scale``, exported as DequantizeLinear on int8 codes."""

    @staticmethod
    def forward(ctx, codes: Tensor, scale: Tensor) -> Tensor:
        return codes.float() * scale.reshape(-1, *([1] * (codes.dim() - 1)))

    @staticmethod
    def symbolic(g, codes, scale):
        n = codes.type().sizes()[0]
        zero = g.op("Constant", value_t=torch.zeros(n, dtype=torch.int8))
        return g.op("DequantizeLinear", codes, scale, zero, axis_i=0)


class QDQLayer(nn.Module):
    """A fake-quant Conv2d/Linear as integer codes + scales, exportable as QDQ ONNX."""

    def __init__(self, q: FakeQuant) -> None:
        super().__init__()
        self.conv = isinstance(q, nn.Conv2d)
        if self.conv:
            self.kw = {
                "stride": q.stride,
                "padding": q.padding,
                "dilation": q.dilation,
                "groups": q.groups,
            }
        if self.conv and q.padding_mode != "zeros":
            raise ValueError(f"QDQ export supports zero-padded convs only, not {q.padding_mode!r}")
        self.act = None
        if q.a_bits is not None:
            if not q.calibrated:
                raise ValueError(
                    "activation range not calibrated: run seernet.compression.quant.calibrate_ first"
                )
            self.act = (
                float(q.act_scale.item()),
                *act_qrange(q.a_bits, q.act_signed),
                bool(q.act_signed),
            )
        if q.w_bits is None:
            self.register_buffer("weight", q.weight.detach().float().clone())
            self.codes = None
        else:
            codes = export_codes(q)
            # Same weights on a k times finer grid (see the module doc: the bias resolution).
            k = fine_factor(*weight_qrange(q.w_bits), signed=True)
            self.register_buffer("codes", codes.weight_codes * k)
            self.register_buffer("scale", codes.weight_scale.float() / k)
        bias = None if q.bias is None else q.bias.detach().float().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.act is not None:
            x = QuantizeInput.apply(x, *self.act)
        w = self.weight if self.codes is None else _DequantizeWeight.apply(self.codes, self.scale)
        return F.conv2d(x, w, self.bias, **self.kw) if self.conv else F.linear(x, w, self.bias)


@torch.no_grad()
def qdq_module(model: nn.Module) -> nn.Module:
    """A CPU eval-mode copy of a fake-quant model with every wrapper replaced by ``QDQLayer``."""
    out = copy.deepcopy(model).cpu().eval()
    for name, q in quant_layers(out).items():
        parent, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent), child, QDQLayer(q))
    return out


def export_qdq(
    model: nn.Module,
    example: Tensor,
    path: Path,
    residuals: str = "float",
    calibration: Tensor | None = None,
) -> None:
    """Write ``model`` (fake-quantized, calibrated) as a checked QDQ ONNX file with a dynamic batch.

    ``residuals="int8"`` also quantizes residual-branch conv outputs at 8 bits, with ranges
    calibrated on ``calibration`` images (``seernet.compression.onnx_residuals``; needs onnxruntime);
    ``"float"`` keeps the file exactly what seernet simulates.
    """
    import onnx

    from seernet.compression.onnx_residuals import RESIDUAL_MODES, quantize_residual_branches_

    if residuals not in RESIDUAL_MODES:
        raise ValueError(f"residuals must be one of {RESIDUAL_MODES}, got {residuals!r}")
    if residuals == "int8" and calibration is None:
        raise ValueError("residuals='int8' needs calibration images")
    module = qdq_module(model)
    tmp = Path(path).with_suffix(".raw.onnx")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
            torch.onnx.export(module, (example.cpu(),), str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})  # fmt: skip
        graph = onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    fold_batchnorm_(graph)
    if residuals == "int8":
        quantize_residual_branches_(graph, calibration.cpu().numpy())
    quantize_biases_(graph)  # after the branches: a quantized branch makes its conv an integer one
    float_weights_(graph)  # last: the passes above find weights through their DequantizeLinear
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))


# --- graph passes ----------------------------------------------------------------------------
class GraphConstants:
    """Constant tensors of a graph by value name (initializers and Constant nodes), editable."""

    def __init__(self, graph) -> None:  # an onnx.GraphProto
        from onnx import numpy_helper

        self.graph = graph
        self.init = {t.name: t for t in graph.initializer}
        self.nodes = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
        # The exporter shares equal parameters through Identity nodes.
        self.alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
        self._np = numpy_helper

    def get(self, name: str) -> np.ndarray | None:
        name = self.alias.get(name, name)
        if name in self.init:
            return self._np.to_array(self.init[name])
        node = self.nodes.get(name)
        if node is None:
            return None
        return self._np.to_array(next(a.t for a in node.attribute if a.name == "value"))

    def add(self, name: str, value: np.ndarray) -> str:
        """A new initializer ``name`` (made unique) holding ``value``; returns its name."""
        while name in self.init or name in self.nodes:
            name += "_"
        t = self._np.from_array(value, name)
        self.graph.initializer.append(t)
        self.init[name] = t
        return name


def producers_of(graph) -> dict[str, object]:
    return {o: n for n in graph.node for o in n.output}


def consumers(graph) -> dict[str, list]:
    users: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    return users


def weight_dequantizer(node, producers: dict, consts: GraphConstants):
    """The DequantizeLinear node feeding ``node``'s weight from constant codes, or None."""
    dq = producers.get(node.input[1]) if len(node.input) > 1 else None
    if dq is None or dq.op_type != "DequantizeLinear" or consts.get(dq.input[0]) is None:
        return None
    return dq


def fold_batchnorm_(graph) -> int:  # an onnx.ModelProto
    """Fold each BatchNormalization that alone consumes a QDQ-weight Conv into it; returns the count."""
    g = graph.graph
    consts, producers, users = GraphConstants(g), producers_of(g), consumers(g)
    folded = []
    for bn in [n for n in g.node if n.op_type == "BatchNormalization"]:
        conv = producers.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or len(users.get(conv.output[0], [])) != 1:
            continue
        dq = weight_dequantizer(conv, producers, consts)
        if dq is None:
            continue
        gamma, beta, mean, var = (consts.get(i).astype(np.float64) for i in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        f = gamma / np.sqrt(var + np.float64(np.float32(eps)))
        codes, scale = consts.get(dq.input[0]), consts.get(dq.input[1]).astype(np.float64)
        sign = np.where(f < 0, -1, 1).astype(codes.dtype).reshape(-1, *([1] * (codes.ndim - 1)))
        bias = (
            consts.get(conv.input[2]).astype(np.float64)
            if len(conv.input) > 2 and conv.input[2]
            else 0.0
        )
        # A channel that BatchNorm zeroes (gamma = 0, timm's zero-init residual branches) keeps
        # its scale with zero codes: a zero scale would make its bias's int32 scale zero too.
        dead = f == 0
        new_codes = np.where(dead.reshape(sign.shape), 0, codes * sign).astype(codes.dtype)
        dq.input[0] = consts.add(dq.input[0] + "_bn", new_codes)
        new_scale = np.where(dead, scale, scale * np.abs(f)).astype(np.float32)
        dq.input[1] = consts.add(dq.input[1] + "_bn", new_scale)
        new_bias = consts.add(
            conv.output[0] + "_bias", ((bias - mean) * f + beta).astype(np.float32)
        )
        conv.input[2:] = [new_bias]
        _rename_uses(g, bn.output[0], conv.output[0])
        folded.append(bn)
    for bn in folded:
        g.node.remove(bn)
    _drop_unused(g)
    return len(folded)


def quantize_biases_(graph) -> int:  # an onnx.ModelProto
    """Store float biases of Conv/Gemm layers with quantized input and weight as int32 DQ; returns the count."""
    g = graph.graph
    consts, producers, users = GraphConstants(g), producers_of(g), consumers(g)
    new_nodes, done = [], 0
    for node in g.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or not node.input[2]:
            continue
        if not requantized(node, users):
            continue  # ORT runs it as a float op anyway: the float bias stays exact
        x_dq, w_dq = producers.get(node.input[0]), weight_dequantizer(node, producers, consts)
        bias = consts.get(node.input[2])
        if x_dq is None or x_dq.op_type != "DequantizeLinear" or w_dq is None or bias is None:
            continue
        if node.op_type == "Gemm" and any(
            a.name in ("alpha", "beta") and a.f != 1.0 for a in node.attribute
        ):
            continue
        sx = consts.get(x_dq.input[1]).astype(np.float32)
        scale = (sx * consts.get(w_dq.input[1]).astype(np.float32)).astype(np.float32)
        if not np.all(scale > 0):  # underflowed: the bias could not be stored; it stays float
            continue
        codes = np.round(bias.astype(np.float64) / scale.astype(np.float64))
        codes = np.clip(codes, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
        out = node.input[2] + "_dq"
        c, s, z = (consts.add(node.input[2] + suffix, v) for suffix, v in
                   (("_codes", codes), ("_scale", scale), ("_zero", np.zeros_like(codes))))  # fmt: skip
        from onnx import helper

        new_nodes.append(helper.make_node("DequantizeLinear", [c, s, z], [out], axis=0))
        node.input[2] = out
        done += 1
    for n in new_nodes:  # initializers only as inputs: inserting first keeps the graph sorted
        g.node.insert(0, n)
    _drop_unused(g)
    return done


def float_weights_(graph) -> int:  # an onnx.ModelProto
    """Give every residual-stream conv ORT runs in float its weight as a float32 initializer;
    returns the count.

    ORT's optimizer never constant-folds a DequantizeLinear in a QDQ model (it keeps them for
    fusion), so a float conv whose weight comes through one dequantizes it every run and cannot
    be prepacked or run in ORT's blocked (NCHWc) float layout: 1.3-3x slower per conv here. The
    initializer holds float32(codes) x float32(scale), the values DequantizeLinear computes, bit
    for bit. The finer-grid requantization in front of such a conv (``DequantizeLinear ->
    QuantizeLinear -> DequantizeLinear``, there for an int32 bias a float conv does not have) is
    bypassed: it reproduces its input exactly. Only convs of the residual stream are changed
    (their output, or their one Relu's, goes into an Add: residual branches and a ResNet's stem):
    ORT may still fuse another float-output conv into an integer one (it moves quantizers up past
    MaxPool, Reshape, ...) and would then quantize a float weight itself, per tensor.
    """
    g = graph.graph
    consts, producers, users = GraphConstants(g), producers_of(g), consumers(g)
    done = 0
    for node in [n for n in g.node if n.op_type == "Conv" and _feeds_add(n, users)]:
        dq = weight_dequantizer(node, producers, consts)
        if dq is None or requantized(node, users) or len(users[dq.output[0]]) != 1:
            continue
        codes, scale = consts.get(dq.input[0]), consts.get(dq.input[1]).astype(np.float32)
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        shape = [-1 if d == axis % codes.ndim else 1 for d in range(codes.ndim)]
        weight = codes.astype(np.float32) * (scale.reshape(shape) if scale.ndim else scale)
        node.input[1] = consts.add(dq.input[0] + "_float", weight.astype(np.float32))
        node.input[0] = _coarse_input(node.input[0], producers, users, consts)
        done += 1
    _drop_dead_nodes(g)
    _drop_unused(g)
    return done


def _feeds_add(node, users: dict[str, list]) -> bool:  # an onnx.NodeProto
    """Whether an Add reads ``node``'s output, or the output of the one Relu that alone reads it."""
    nxt = users.get(node.output[0], [])
    if len(nxt) == 1 and nxt[0].op_type == "Relu":
        nxt = users.get(nxt[0].output[0], [])
    return any(u.op_type == "Add" for u in nxt)


def _coarse_input(name: str, producers: dict, users: dict, consts: GraphConstants) -> str:
    """The coarse-grid value behind ``name`` when ``name`` is its finer-grid re-expression
    (``fine_factor``) read by one node only, else ``name``."""
    fine_dq = producers.get(name)
    fine_q = producers.get(fine_dq.input[0]) if fine_dq is not None else None
    coarse = producers.get(fine_q.input[0]) if fine_q is not None else None
    chain = (fine_dq, fine_q, coarse)
    if [getattr(n, "op_type", None) for n in chain] != [
        "DequantizeLinear",
        "QuantizeLinear",
        "DequantizeLinear",
    ]:
        return name
    if len(users.get(name, [])) != 1 or len(users.get(fine_q.output[0], [])) != 1:
        return name
    scales = [consts.get(n.input[1]) for n in chain]
    zeros = [consts.get(n.input[2]) if len(n.input) > 2 else 0 for n in chain]
    if any(v is None or np.size(v) != 1 for v in scales + zeros) or any(
        np.any(z != 0) for z in zeros
    ):
        return name
    k = float(scales[2]) / float(scales[0])
    exact = scales[0] == scales[1] and k >= 1 and np.log2(k) == round(np.log2(k))
    return coarse.output[0] if exact else name  # k x codes x (scale / k): the same float32 values


def _drop_dead_nodes(g) -> None:
    """Remove nodes none of whose outputs is read (by a node or as a graph output)."""
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            g.node.remove(n)


def requantized(node, users: dict[str, list]) -> bool:  # an onnx.NodeProto
    """Whether ``node``'s output goes (through at most a Relu) only into QuantizeLinear nodes:
    the pattern ORT fuses into one integer op."""
    nxt = users.get(node.output[0], [])
    if len(nxt) == 1 and nxt[0].op_type == "Relu":
        nxt = users.get(nxt[0].output[0], [])
    return bool(nxt) and all(u.op_type == "QuantizeLinear" for u in nxt)


def _rename_uses(g, old: str, new: str) -> None:
    for n in g.node:
        for k, name in enumerate(n.input):
            if name == old:
                n.input[k] = new
    for o in g.output:
        if o.name == old:
            # The graph output keeps its name: rename the producer's output instead.
            for n in g.node:
                for k, name in enumerate(n.output):
                    if name == new:
                        n.output[k] = old
            for n in g.node:
                for k, name in enumerate(n.input):
                    if name == new:
                        n.input[k] = old


def _drop_unused(g) -> None:
    """Remove initializers and Constant nodes nothing reads any more."""
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for t in [t for t in g.initializer if t.name not in used]:
        g.initializer.remove(t)
    for n in [n for n in g.node if n.op_type == "Constant" and n.output[0] not in used]:
        g.node.remove(n)
