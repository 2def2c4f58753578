"""Integer form of fake-quantized layers, and bit-packing of integer codes.

A layer's weight is ``codes * scale`` per output channel, exactly (see ``seernet.compression.quant``:
the layer's stored scales, calibrated or learned, are used with 16 significant bits, so
the float32 product is exact). Activations carry a
scale, a zero point (always 0 here) and a signedness.

Packing format: codes are stored as ``bits``-bit two's complement (signed) or plain
binary (unsigned), concatenated in order into one little-endian bit stream: code ``i``
occupies stream bits ``i*bits .. (i+1)*bits - 1``, least significant bit first, and stream
bit ``k`` is bit ``k % 8`` (LSB = 0) of byte ``k // 8``. The last byte is zero-padded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from seernet.compression.quant import FakeQuant, check_bits


@dataclass(frozen=True)
class LayerCodes:
    """What a packed export stores for one fake-quant layer (the bias stays float)."""

    weight_codes: Tensor  # int8, the weight's shape, in [-(2^(b-1) - 1), 2^(b-1) - 1]
    weight_scale: Tensor  # float32, one per output channel
    w_bits: int
    a_bits: int | None  # None: the input stays float and the act_* fields are None
    act_scale: float | None
    act_zero_point: int | None
    act_signed: bool | None


def _per_channel(scale: Tensor, ndim: int) -> Tensor:
    return scale.reshape(-1, *([1] * (ndim - 1)))


def export_codes(layer: FakeQuant) -> LayerCodes:
    """Integer weight codes, per-channel scales and activation range of a wrapper."""
    if layer.w_bits is None:
        raise ValueError("layer weights are float (w_bits None): nothing to export as codes")
    if layer.a_bits is not None and not layer.calibrated:
        raise ValueError("layer activation range is not calibrated: run calibrate_ first")
    with torch.no_grad():
        scale = layer.exact_weight_scale()
        wq = layer.quantized_weight().float()
        codes = torch.round(wq / _per_channel(scale, wq.dim())).to(torch.int8)
    act = layer.a_bits is not None
    return LayerCodes(
        weight_codes=codes.cpu(),
        weight_scale=scale.cpu(),
        w_bits=layer.w_bits,
        a_bits=layer.a_bits,
        act_scale=layer.act_scale.item() if act else None,
        act_zero_point=0 if act else None,
        act_signed=layer.act_signed if act else None,
    )


def dequantize_weight(codes: LayerCodes) -> Tensor:
    """``codes * scale`` in float32: bit for bit the weight the fake-quant forward uses."""
    c = codes.weight_codes.float()
    return c * _per_channel(codes.weight_scale.float(), c.dim())


def load_codes_(layer: FakeQuant, codes: LayerCodes) -> FakeQuant:
    """Rebuild a wrapper (of matching shape) from its integer form, in place."""
    if tuple(layer.weight.shape) != tuple(codes.weight_codes.shape):
        raise ValueError(
            f"weight shape {tuple(layer.weight.shape)} != codes {tuple(codes.weight_codes.shape)}"
        )
    if codes.act_zero_point not in (None, 0):
        raise ValueError("only zero-point 0 activations are supported")
    layer.set_bits(codes.w_bits, codes.a_bits)
    with torch.no_grad():
        layer.weight.copy_(dequantize_weight(codes))
        layer.weight_scale.copy_(codes.weight_scale)  # after set_bits, which may re-derive it
    layer._cache = None
    if codes.a_bits is not None:
        layer.set_act_range(codes.act_scale, codes.act_signed)
    return layer


def _code_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def _valid_bits(bits: int) -> int:
    if check_bits(bits) is None:
        raise ValueError("packing needs an int bit-width in 2..8")
    return bits


def pack_codes(codes: Tensor, bits: int, signed: bool = True) -> Tensor:
    """Pack integer codes, ``bits`` each, into a CPU uint8 tensor (format in module doc)."""
    bits = _valid_bits(bits)
    v = codes.detach().reshape(-1).to("cpu", torch.int64)
    lo, hi = _code_range(bits, signed)
    if v.numel() and (v.min() < lo or v.max() > hi):
        kind = "signed" if signed else "unsigned"
        raise ValueError(f"codes outside the {kind} {bits}-bit range [{lo}, {hi}]")
    low = (v & (2**bits - 1)).to(torch.uint8).numpy()  # two's complement keeps the low bits
    planes = np.unpackbits(low[:, None], axis=1, bitorder="little")[:, :bits]
    return torch.from_numpy(np.packbits(planes.reshape(-1), bitorder="little"))


def unpack_codes(
    packed: Tensor, bits: int, shape: int | Sequence[int], signed: bool = True
) -> Tensor:
    """Inverse of ``pack_codes``: int8 codes (uint8 when unsigned) of ``shape``."""
    bits = _valid_bits(bits)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    n = math.prod(shape)
    if packed.numel() != math.ceil(n * bits / 8):
        raise ValueError(f"{packed.numel()} bytes cannot hold exactly {n} codes of {bits} bits")
    stream = np.unpackbits(packed.detach().cpu().numpy().astype(np.uint8), bitorder="little")
    low = np.packbits(stream[: n * bits].reshape(n, bits), axis=1, bitorder="little")[:, 0]
    if not signed:
        return torch.from_numpy(low).reshape(shape)
    v = low.astype(np.int16)
    v[v >= 2 ** (bits - 1)] -= 2**bits  # sign-extend
    return torch.from_numpy(v.astype(np.int8)).reshape(shape)
