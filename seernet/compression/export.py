"""Exports of a compressed model: TorchScript, ONNX, and packed integer weights.

TorchScript and ONNX start from ``deployable(model)``: a copy of the fake-quantized model
made of plain torch modules only. Each fake-quant Conv2d/Linear becomes ``ActQuant`` (the
input's fake quantization as mul, round, clamp, mul) followed by an ordinary layer holding
the dequantized weight (codes x scale, exact in float32). In eval mode on the CPU it computes
bit for bit what the fake-quant model computes, and running it needs torch only.

Packed format (``packed.bin``), one file:
``b"SEERPACK"``, a little-endian uint32 ``n``, ``n`` bytes of zlib-compressed UTF-8 JSON
header, then the payload. The header holds ``meta`` (what ``load_packed`` needs to rebuild
the pruned architecture: model name, classes, input shape, policy space, policy), ``layers``
(per fake-quant layer: bits, activation scale and signedness) and ``tensors``: in payload
order, each ``{"name", "shape", "dtype"}`` for a raw little-endian tensor, or with
``"bits"`` for conv/linear weight codes packed by ``seernet.compression.packing.pack_codes``
(signed, ``ceil(numel x bits / 8)`` bytes). Per-channel weight scales are float32 tensors
named ``<layer>.weight_scale``; every other state-dict tensor is stored as is.
"""

from __future__ import annotations

import copy
import json
import math
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seernet.compression.packing import (
    LayerCodes,
    dequantize_weight,
    export_codes,
    load_codes_,
    pack_codes,
    unpack_codes,
)
from seernet.compression.quant import FakeQuant, act_qrange, quant_layers, quantize_
from seernet.errors import UserError

MAGIC = b"SEERPACK"
FORMAT_VERSION = 1


class ActQuant(nn.Module):
    """Per-tensor fake quantization of an input: ``clamp(round(x / s), lo, hi) * s``."""

    def __init__(self, scale: Tensor, lo: int, hi: int) -> None:
        super().__init__()
        self.lo, self.hi = lo, hi
        scale = scale.detach().float().reshape(())
        self.register_buffer("scale", scale.clone())
        # The same float32 reciprocal seernet.compression.quant multiplies by, so results agree
        # bit for bit.
        self.register_buffer("inv_scale", scale.reciprocal())

    def forward(self, x: Tensor) -> Tensor:
        return x.mul(self.inv_scale).round().clamp(self.lo, self.hi).mul(self.scale)


def _plain_layer(q: FakeQuant, weight: Tensor) -> nn.Module:
    """An ordinary Conv2d/Linear shaped like ``q``, holding ``weight`` and ``q``'s bias."""
    dev = weight.device
    if isinstance(q, nn.Conv2d):
        layer = nn.Conv2d(q.in_channels, q.out_channels, q.kernel_size, q.stride, q.padding, q.dilation,
                          q.groups, q.bias is not None, q.padding_mode, device=dev)  # fmt: skip
    else:
        layer = nn.Linear(q.in_features, q.out_features, q.bias is not None, device=dev)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if q.bias is not None:
            layer.bias.copy_(q.bias)
    return layer


def _replacement(q: FakeQuant, quantized: bool) -> nn.Module:
    if not quantized:
        return _plain_layer(q, q.weight.detach())
    weight = (
        q.weight.detach()
        if q.w_bits is None
        else dequantize_weight(export_codes(q)).to(q.weight.device)
    )
    layer = _plain_layer(q, weight)
    if q.a_bits is None:
        return layer
    if not q.calibrated:
        raise ValueError(
            "activation range not calibrated: run seernet.compression.quant.calibrate_ first"
        )
    return nn.Sequential(ActQuant(q.act_scale, *act_qrange(q.a_bits, q.act_signed)), layer)


@torch.no_grad()
def deployable(model: nn.Module, quantized: bool = True) -> nn.Module:
    """A plain-torch copy in eval mode: fake quantization as explicit ops, or (``quantized=False``) the float pruned model."""
    out = copy.deepcopy(model).eval()
    for name, q in quant_layers(out).items():
        parent, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent), child, _replacement(q, quantized))
    return out


# --- TorchScript and ONNX ------------------------------------------------------------------
@torch.no_grad()
def export_torchscript(model: nn.Module, example: Tensor, path: Path) -> None:
    """Trace ``model`` (plain torch, e.g. ``deployable``) on CPU and save it for ``torch.jit.load``."""
    import warnings

    model = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        # torch 2.14 marks TorchScript deprecated; it still loads anywhere torch runs, without seernet.
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(model, example.cpu()), str(path))


def export_onnx(model: nn.Module, example: Tensor, path: Path, opset: int = 17) -> str | None:
    """Export to ONNX with a dynamic batch and check it; returns a note instead when onnx is missing."""
    try:
        import onnx
    except ImportError:
        return "onnx is not installed: model.onnx skipped (pip install 'seernet[onnx]')"
    import warnings

    model = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        # dynamo=False: the default exporter needs onnxscript, which is not a dependency.
        torch.onnx.export(model, (example.cpu(),), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})  # fmt: skip
    onnx.checker.check_model(onnx.load(str(path)))
    return None


# --- packed integer weights ----------------------------------------------------------------
def _layer_entry(q: FakeQuant) -> dict[str, Any]:
    act = q.a_bits is not None
    return {"w_bits": q.w_bits, "a_bits": q.a_bits,
            "act_scale": q.act_scale.item() if act else None, "act_signed": q.act_signed if act else None}  # fmt: skip


def _payload(model: nn.Module) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Tensor entries and their bytes: packed weight codes + scales, every other tensor raw."""
    entries, blobs = [], []
    codes = {n: export_codes(q) for n, q in quant_layers(model).items() if q.w_bits is not None}
    for key, value in model.state_dict().items():
        if not isinstance(value, Tensor):
            continue  # the wrappers' extra state (bits, signedness) is in the layers table
        if key.endswith(".weight_scale") and key.removesuffix(".weight_scale") in codes:
            continue  # the layer's scale parameter: already stored right after its codes
        layer = key.removesuffix(".weight")
        if layer in codes:
            c = codes[layer]
            entries.append({"name": key, "shape": list(c.weight_codes.shape), "bits": c.w_bits})
            blobs.append(pack_codes(c.weight_codes, c.w_bits).numpy().tobytes())
            key, value = (
                f"{layer}.weight_scale",
                c.weight_scale,
            )  # stored raw, right after its codes
        arr = value.detach().cpu().contiguous().numpy()
        entries.append({"name": key, "shape": list(arr.shape), "dtype": arr.dtype.str})
        blobs.append(arr.tobytes())
    return entries, blobs


def save_packed(model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
    """Write ``model``'s integer weight codes, scales and remaining tensors (format in module doc)."""
    entries, blobs = _payload(model)
    layers = {n: _layer_entry(q) for n, q in quant_layers(model).items()}
    header = {"format": FORMAT_VERSION, "meta": meta, "layers": layers, "tensors": entries}
    head = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(head)) + head)
        for blob in blobs:
            f.write(blob)


def _header(raw: bytes, path: Path) -> tuple[dict[str, Any], int]:
    """The decoded JSON header and where the payload starts."""
    if raw[: len(MAGIC)] != MAGIC or len(raw) < len(MAGIC) + 4:
        raise UserError(f"{path} is not a seernet packed model (bad magic)")
    (n,) = struct.unpack_from("<I", raw, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        header = json.loads(zlib.decompress(raw[start : start + n]))
        if header["format"] != FORMAT_VERSION:
            raise ValueError(f"format {header['format']}, this seernet reads {FORMAT_VERSION}")
    except (zlib.error, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{path} has a corrupt header ({exc}); re-export it with 'seernet compress'"
        ) from exc
    return header, start + n


def _entry_at(raw: bytes, pos: int, e: dict[str, Any]) -> tuple[Tensor | tuple[Tensor, int], int]:
    """One payload entry starting at ``pos``, and its length in bytes."""
    n = math.prod(e["shape"])
    if "bits" in e:
        size = math.ceil(n * e["bits"] / 8)
        dtype, count = np.dtype(np.uint8), size
    else:
        dtype = np.dtype(e["dtype"])
        size, count = dtype.itemsize * n, n
    if pos + size > len(raw):
        raise ValueError("truncated")
    arr = torch.from_numpy(np.frombuffer(raw, dtype, count=count, offset=pos).copy())
    return ((arr, e["bits"]) if "bits" in e else arr.reshape(e["shape"])), size


def read_packed(path: Path) -> tuple[dict[str, Any], dict[str, Tensor | tuple[Tensor, int]]]:
    """(header, tensors): raw tensors by state-dict name, and (packed bytes, bits) for weight codes."""
    raw = Path(path).read_bytes()
    header, pos = _header(raw, path)
    tensors = {}
    for e in header["tensors"]:
        try:
            tensors[e["name"]], size = _entry_at(raw, pos, e)
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(
                f"{path} is truncated or corrupt ({exc}); re-export it with 'seernet compress'"
            ) from exc
        pos += size
    if pos != len(raw):
        raise UserError(
            f"{path} has {len(raw) - pos} unexpected trailing bytes; re-export it with 'seernet compress'"
        )
    return header, tensors


def _skeleton(meta: dict[str, Any], arch: nn.Module | None = None) -> nn.Module:
    """The pruned, fake-quantized architecture described by ``meta`` (weights to be filled);
    ``arch``: the uncompressed architecture, when ``meta["model"]`` cannot rebuild it."""
    from seernet.compression.prune import prune_model
    from seernet.models import create_model
    from seernet.space.graph import build_space
    from seernet.space.policy import Policy, SpaceChoices

    if arch is None:
        arch = create_model(meta["model"], meta["num_classes"], meta["in_channels"])
    choices = SpaceChoices(
        **{k: tuple(v) if k == "bits" else v for k, v in meta["choices"].items()}
    )
    space = build_space(arch, tuple(meta["input_shape"]), choices)
    if space.fingerprint != meta["space_fingerprint"]:
        raise UserError(
            f"this seernet builds {meta['model']!r} with another policy space than the packed file's"
        )
    policy = Policy.from_json(meta["policy"])
    # Which channels survive does not matter here: every tensor is overwritten from the file.
    return quantize_(prune_model(arch, space, policy), policy.bits)


def load_packed(
    path: Path, device: torch.device | str = "cpu", arch: nn.Module | None = None
) -> nn.Module:
    """Rebuild the fake-quantized compressed model from ``packed.bin`` (eval mode, on ``device``).

    ``arch`` (a copy is pruned): the uncompressed model, needed when it came to seernet as a
    Python object; a registry model or plug-in is rebuilt from the file's own record."""
    header, tensors = read_packed(path)
    with torch.enable_grad():  # Torch-Pruning traces the architecture with autograd
        model = _skeleton(header["meta"], None if arch is None else copy.deepcopy(arch).cpu())
    with torch.no_grad():
        _fill_(model, header, tensors, path)
    return model.to(device).eval()


def _fill_(model: nn.Module, header: dict[str, Any], tensors: dict[str, Any], path: Path) -> None:
    layers = quant_layers(model)
    state = {}
    for name, e in header["layers"].items():
        q = layers[name]
        if e["w_bits"] is None:  # float weight: it is among the raw tensors
            q.set_bits(None, e["a_bits"])
            if e["a_bits"] is not None:
                q.set_act_range(e["act_scale"], e["act_signed"])
            continue
        packed, bits = tensors.pop(f"{name}.weight")
        codes = unpack_codes(packed, bits, q.weight.shape)
        zero = None if e["a_bits"] is None else 0
        load_codes_(q, LayerCodes(codes, tensors.pop(f"{name}.weight_scale"), bits, e["a_bits"],
                                  e["act_scale"], zero, e["act_signed"]))  # fmt: skip
        state[f"{name}.weight"] = q.weight.detach().clone()
        state[f"{name}.weight_scale"] = q.weight_scale.detach().clone()
    missing, unexpected = model.load_state_dict({**state, **tensors}, strict=False)
    if unexpected or any(not k.endswith("_extra_state") for k in missing):
        raise UserError(
            f"{path} does not fit its architecture ({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
