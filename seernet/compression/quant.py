"""Simulated mixed precision: fake-quantized Conv2d/Linear, calibration, ``quantize_``.

Assumptions, stated once:
- Weights: per output channel, symmetric, integer codes in [-(2^(b-1) - 1), 2^(b-1) - 1].
  The scale is stored in the layer (``weight_scale``, one per output channel). It is set
  when the weight bit-width is set or changed, and again by ``calibrate_``: the clip, a
  fraction of max|w_c| on a grid, that minimises ||Q(w_c) - w_c||^2 ("mse"; "max" clips
  at max|w_c|, the old rule: at 2 bits it zeroes most weights). Scales are used rounded
  *up* to 16 significant bits so that code x scale is exact in float32: dequantized
  weights are then reproducible bit for bit from (codes, scales), and re-quantizing them
  gives the same codes.
- Input activations: per tensor, zero point 0; unsigned codes 0..2^b - 1 when the
  calibration data is non-negative (after ReLU), else signed symmetric codes.
- Bits are ints in 2..8; ``None`` or 32 leaves that side in float.
- Gradients use the straight-through estimator of PyTorch's fused fake-quant ops
  (identity inside the range, zero where clipped; on CPU the activations' is computed by
  vectorized ops, equal bit for bit); scales stay fixed during training,
  unless LSQ is on (``set_lsq_``): then weight and activation step sizes are learned
  as in Esser et al. 2020, "Learned Step Size Quantization", each step's gradient scaled
  by g = 1/sqrt(N * Qp) with Qp the largest code and N as in the paper: the layer's
  number of weights (for per-channel steps too; one channel's weights would give a larger
  g and larger, less stable step updates), or the features of one input.
  The learned steps are used in the forward as the exports use them (16 significant
  bits), so a model trained with LSQ exports bit for bit like any other.

Wrappers subclass ``nn.Conv2d``/``nn.Linear`` and share the original layer's parameters,
so parameter names, pruned shapes, trainability and the FLOPs counters are unchanged.
"""

from __future__ import annotations

import numbers
import threading
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seernet.space.graph import quantizable

_MIN_SCALE = 1e-20  # all-zero channels (pruned to nothing) would otherwise divide by zero
# Learned steps are kept >= this: a step that an overshooting update drove to <= 0 would make
# 1/s (and its gradient -1/s^2) overflow; at 1e-8 the layer merely outputs ~0 and recovers.
_MIN_LEARNED_STEP = 1e-8
# Clip candidates as fractions of the observed max: 0.03 .. 1.0, geometric (8% steps); 2-bit
# optima of heavy-tailed activations lie far below the max, 8-bit ones near it.
_DEFAULT_FRACTIONS = tuple(0.03 ** (1 - i / 47) for i in range(48))
# Weight clip candidates, 1.0 down to 0.1 in 33 even steps. Largest first: on a tie (an
# all-zero channel) the search keeps the plain max.
WEIGHT_FRACTIONS = tuple(1.0 - 0.9 * i / 32 for i in range(33))
WEIGHT_CLIPS = ("mse", "max")


def check_bits(bits: int | None) -> int | None:
    """Validate a bit-width: an int in 2..8, or None/32 for float (returned as None)."""
    is_int = isinstance(bits, numbers.Integral) and not isinstance(bits, bool)
    if bits is None or (is_int and bits == 32):
        return None
    if not is_int or not 2 <= bits <= 8:
        raise ValueError(f"bit-width must be an int in 2..8 (or None/32 for float), got {bits!r}")
    return int(bits)


def weight_qrange(bits: int) -> tuple[int, int]:
    """Symmetric signed code range of a weight at ``bits``."""
    q = 2 ** (bits - 1) - 1
    return -q, q


def act_qrange(bits: int, signed: bool) -> tuple[int, int]:
    """Code range of an activation: symmetric signed, or unsigned 0..2^b - 1."""
    return weight_qrange(bits) if signed else (0, 2**bits - 1)


def exact_scale(scale: Tensor) -> Tensor:
    """``scale`` as float32 rounded up to 16 significant bits (at least 1e-20); no gradient."""
    scale = scale.detach().float().clamp_min(_MIN_SCALE).contiguous()
    # Clearing the low 8 mantissa bits (rounding up) makes code * scale exact for |code| <= 127.
    return ((scale.view(torch.int32) + 0xFF) & ~0xFF).view(torch.float32)


def weight_scale(weight: Tensor, bits: int) -> Tensor:
    """Per-output-channel float32 scale max|w_c| / qmax, rounded up to 16 significant bits."""
    amax = weight.detach().abs().flatten(1).amax(1)
    return exact_scale(amax.float() / weight_qrange(bits)[1])


def mse_weight_scale(
    weight: Tensor, bits: int, fractions: Sequence[float] = WEIGHT_FRACTIONS
) -> Tensor:
    """Per output channel, the exact scale of the clip (a fraction of max|w_c|) with least ||Q(w_c) - w_c||^2."""
    w = weight.detach().float()
    amax = w.abs().flatten(1).amax(1)
    best, best_err = None, None
    for f in fractions:  # the quantizer itself scores each candidate: no drift from the forward
        cand = exact_scale(amax * f / weight_qrange(bits)[1])
        err = (fake_quant_weight(w, cand, bits) - w).square().flatten(1).sum(1)
        if best is None:
            best, best_err = cand, err
            continue
        better = err < best_err  # strict: ties keep the earlier (larger) clip
        best, best_err = torch.where(better, cand, best), torch.where(better, err, best_err)
    return best.contiguous()


def choose_weight_scale(weight: Tensor, bits: int, clip: str = "mse") -> Tensor:
    """The weight scale of clip rule ``clip``: "mse" (least squared error) or "max"."""
    if clip == "mse":
        return mse_weight_scale(weight, bits)
    if clip == "max":
        return weight_scale(weight, bits)
    raise ValueError(f"weight clip must be one of {WEIGHT_CLIPS}, got {clip!r}")


def _same_value(value: Tensor, grad_from: Tensor) -> Tensor:
    """``value`` exactly in the forward, the gradient of ``grad_from`` in the backward."""
    return value + (grad_from - grad_from.detach())


def lsq_fake_quant(
    x: Tensor, step: Tensor, lo: int, hi: int, grad_scale: float, exact: bool = True
) -> Tensor:
    """LSQ fake quantization ``round(clamp(x / s, lo, hi)) * s``: STE for ``x``, LSQ gradient for ``s``.

    ``step`` broadcasts against ``x``; its forward value is ``exact_scale(step)`` (``step``
    itself when not ``exact``: activation scales) and its gradient is multiplied by
    ``grad_scale``. Values equal the fused ops' bit for bit (both multiply by the float32
    reciprocal and round half to even).
    """
    s = _same_value(exact_scale(step) if exact else step.detach(), step * grad_scale)
    v = x * s.reciprocal()
    v = _same_value(v.round().clamp(lo, hi), v.clamp(lo, hi))  # round: straight through
    return v * s


def lsq_grad_scale(values_per_step: int, qmax: int) -> float:
    """LSQ's step-size gradient scale g = 1 / sqrt(N * Qp)."""
    return 1.0 / (max(values_per_step, 1) * qmax) ** 0.5


def fake_quant_weight(weight: Tensor, scale: Tensor, bits: int) -> Tensor:
    """Fake-quantize ``weight`` per output channel with ``scale`` (STE gradient)."""
    zero = torch.zeros(scale.shape, dtype=torch.int32, device=scale.device)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, *weight_qrange(bits))


class Scratch:
    """Per-thread reusable CPU buffer for quantized inputs, shared by a model's wrappers.

    A fresh activation-sized tensor per layer page-faults on every forward (the allocator
    hands large blocks back to the OS), which on CPU costs more than the quantization math.
    A quantized input lives only inside its layer's forward, so one buffer serves them all.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def like(self, x: Tensor) -> Tensor:
        """An uninitialized contiguous tensor with ``x``'s shape and dtype."""
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.dtype != x.dtype or buf.numel() < x.numel():
            with torch.inference_mode(False):  # an inference tensor could not be reused outside
                buf = self._local.buf = torch.empty(x.numel(), dtype=x.dtype)
        return buf[: x.numel()].view(x.shape)

    def __deepcopy__(self, memo: dict) -> Scratch:
        return Scratch()

    def __reduce__(self) -> tuple:
        return Scratch, ()


class _ActFakeQuantSTE(torch.autograd.Function):
    """The fused per-tensor op's values and gradient (zero point 0), from vectorized ops.

    Its backward is the fused op's: the incoming gradient where the rounded code lies in
    lo..hi, zero elsewhere (the code before clamping, as the fused op's cached mask)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, lo: int, hi: int) -> Tensor:
        codes = torch.mul(x, scale.reciprocal()).round_()
        ctx.save_for_backward((codes >= lo) & (codes <= hi))
        return codes.clamp_(lo, hi).mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None


def fake_quant_act(
    x: Tensor, scale: Tensor, zero: Tensor, lo: int, hi: int, scratch: Scratch | None = None
) -> Tensor:
    """Per-tensor fake quantization of ``x`` to codes lo..hi (STE gradient under autograd)."""
    if x.device.type != "cpu":
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, lo, hi)
    if torch.is_grad_enabled():  # training: the fused CPU kernel costs a sixth of a QAT step
        return _ActFakeQuantSTE.apply(x, scale, lo, hi)
    # PyTorch's fused CPU kernel is scalar code (about 10x a ReLU); these vectorized ops
    # compute the same values: round-half-even(x * (1/scale)), clamped, times scale.
    out = scratch.like(x) if scratch is not None and x.is_contiguous() else torch.empty_like(x)
    return torch.mul(x, scale.reciprocal(), out=out).round_().clamp_(lo, hi).mul_(scale)


class FakeQuant:
    """Mixin of the fake-quant wrappers: bit-widths, activation range, quantized weight."""

    w_bits: int | None
    a_bits: int | None
    act_signed: bool
    calibrated: bool
    lsq: bool = False  # learn the step sizes (set_lsq_) while autograd records

    def _init_quant(self, w_bits: int | None, a_bits: int | None) -> None:
        self.w_bits, self.a_bits = check_bits(w_bits), check_bits(a_bits)
        self.act_signed, self.calibrated, self.observer = True, False, None
        self.scratch: Scratch | None = Scratch()  # quantize_ shares one across a model
        self._cache: tuple[tuple, Tensor] | None = None
        dev = self.weight.device
        # Parameters (frozen unless learned): LSQ trains them; the state-dict keys are the same.
        self.act_scale = nn.Parameter(torch.ones((), device=dev), requires_grad=False)
        ones = torch.ones(self.weight.shape[0], device=dev)
        self.weight_scale = nn.Parameter(ones, requires_grad=False)
        zero = torch.zeros((), dtype=torch.int32, device=dev)
        self.register_buffer("_act_zero", zero, persistent=False)  # the fused op wants a tensor
        self.set_weight_scale_()

    @classmethod
    def from_float(cls, module: nn.Module, w_bits: int | None, a_bits: int | None) -> FakeQuant:
        """A wrapper sharing ``module``'s parameters (built on 'meta': no weights allocated)."""
        q = cls(**cls._ctor_args(module), bias=module.bias is not None, device="meta")
        q.weight, q.bias = module.weight, module.bias
        q._init_quant(w_bits, a_bits)
        return q.train(module.training)

    def set_bits(self, w_bits: int | None, a_bits: int | None) -> None:
        """Change bit-widths; a changed weight width re-derives the weight scale (MSE clip),
        a changed activation width needs a new calibration."""
        w_bits, a_bits = check_bits(w_bits), check_bits(a_bits)
        if a_bits != self.a_bits:
            self.calibrated = False
        changed = w_bits != self.w_bits
        self.w_bits, self.a_bits, self._cache = w_bits, a_bits, None
        if changed:
            self.set_weight_scale_()

    @torch.no_grad()
    def set_weight_scale_(self, clip: str = "mse") -> None:
        """Derive the per-channel weight scale from the current weight with clip rule ``clip``."""
        if self.w_bits is not None:
            self.weight_scale.copy_(choose_weight_scale(self.weight, self.w_bits, clip))
        self._cache = None

    def set_lsq(self, on: bool) -> None:
        """Learn this layer's weight and activation step sizes (LSQ) in training, or freeze them."""
        self.lsq = bool(on)
        self.weight_scale.requires_grad_(self.lsq and self.w_bits is not None)
        self.act_scale.requires_grad_(self.lsq and self.a_bits is not None)
        self._keep_steps_positive()

    @torch.no_grad()
    def _keep_steps_positive(self) -> None:
        if self.weight_scale.requires_grad:
            self.weight_scale.clamp_(min=_MIN_LEARNED_STEP)
        if self.act_scale.requires_grad:
            self.act_scale.clamp_(min=_MIN_LEARNED_STEP)

    def exact_weight_scale(self) -> Tensor:
        """The per-channel scale the forward and the exports use (16 significant bits, no grad)."""
        return exact_scale(self.weight_scale)

    @torch.no_grad()
    def set_act_range(self, scale: float | Tensor, signed: bool) -> None:
        """Set the calibrated activation scale (float) and signedness."""
        self.act_scale.fill_(float(scale))
        self.act_signed, self.calibrated = bool(signed), True

    def quantized_weight(self) -> Tensor:
        """The fake-quantized weight the forward uses (cached in eval mode without grad)."""
        w = self.weight
        if self.w_bits is None:
            return w
        if self.lsq and torch.is_grad_enabled():
            self._keep_steps_positive()  # the last optimizer step may have overshot
            lo, hi = weight_qrange(self.w_bits)
            step = self.weight_scale.view(-1, *([1] * (w.dim() - 1)))
            return lsq_fake_quant(w, step, lo, hi, lsq_grad_scale(w.numel(), hi))
        if self.training or torch.is_grad_enabled():
            return fake_quant_weight(w, self.exact_weight_scale(), self.w_bits)
        # _version changes on every in-place update (optimizer steps, load_state_dict).
        s = self.weight_scale
        key = (
            id(w),
            w.data_ptr(),
            w._version,
            w.shape,
            w.dtype,
            self.w_bits,
            s.data_ptr(),
            s._version,
        )
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, fake_quant_weight(w, self.exact_weight_scale(), self.w_bits))
        return self._cache[1]

    def quantize_input(self, x: Tensor, scratch: Scratch | None = None) -> Tensor:
        """Fake-quantize an input with the calibrated range; a scratch result lives until reuse."""
        if self.observer is not None:
            self.observer(x)
            return x
        if self.a_bits is None:
            return x
        if not self.calibrated:
            raise RuntimeError(
                "activation range not calibrated: run seernet.compression.quant.calibrate_"
            )
        lo, hi = act_qrange(self.a_bits, self.act_signed)
        if self.lsq and torch.is_grad_enabled():
            self._keep_steps_positive()
            g = lsq_grad_scale(x[0].numel(), hi)
            return lsq_fake_quant(x, self.act_scale, lo, hi, g, exact=False)
        return fake_quant_act(x, self.act_scale, self._act_zero, lo, hi, scratch)

    def train(self, mode: bool = True) -> FakeQuant:
        self._cache = None  # a weight edited through .data is not seen by _version
        return super().train(mode)

    def get_extra_state(self) -> dict:
        return {
            "w_bits": self.w_bits,
            "a_bits": self.a_bits,
            "act_signed": self.act_signed,
            "calibrated": self.calibrated,
        }

    def set_extra_state(self, state: dict) -> None:
        # Loaded after the tensors: the bits must not re-derive the weight scale just loaded.
        self.w_bits, self.a_bits = check_bits(state["w_bits"]), check_bits(state["a_bits"])
        self._cache = None
        self.act_signed, self.calibrated = bool(state["act_signed"]), bool(state["calibrated"])

    def extra_repr(self) -> str:
        kind = "signed" if self.act_signed else "unsigned"
        return f"{super().extra_repr()}, w_bits={self.w_bits}, a_bits={self.a_bits} ({kind})"


class QuantConv2d(FakeQuant, nn.Conv2d):
    """``nn.Conv2d`` with fake-quantized weight and input."""

    @staticmethod
    def _ctor_args(m: nn.Conv2d) -> dict:
        keys = (
            "in_channels",
            "out_channels",
            "kernel_size",
            "stride",
            "padding",
            "dilation",
            "groups",
            "padding_mode",
        )
        return {k: getattr(m, k) for k in keys}

    def forward(self, x: Tensor) -> Tensor:
        x = self.quantize_input(x, self.scratch)
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QuantLinear(FakeQuant, nn.Linear):
    """``nn.Linear`` with fake-quantized weight and input."""

    @staticmethod
    def _ctor_args(m: nn.Linear) -> dict:
        return {"in_features": m.in_features, "out_features": m.out_features}

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.quantize_input(x, self.scratch), self.quantized_weight(), self.bias)


_WRAPPERS: dict[type, type] = {nn.Conv2d: QuantConv2d, nn.Linear: QuantLinear}


def _wrapper_of(module: nn.Module) -> type | None:
    """The fake-quant wrapper class for ``module``, or None when it cannot stand in for it: a
    Conv2d/Linear subclass with a forward of its own (timm's Conv2dSame pads in it)."""
    cls = type(module)
    for base, wrapper in _WRAPPERS.items():
        if cls is wrapper:
            return wrapper
        if isinstance(module, base) and not isinstance(module, FakeQuant):
            return wrapper if quantizable(module) else None
    return None


def quant_layers(model: nn.Module) -> dict[str, FakeQuant]:
    """Every fake-quant wrapper of ``model`` by its name in ``model.named_modules()``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, FakeQuant)}


def quantize_(model: nn.Module, bits: Mapping[str, tuple[int | None, int | None]]) -> nn.Module:
    """Replace the named Conv2d/Linear layers by wrappers with (w_bits, a_bits), in place."""
    modules = dict(model.named_modules())
    for name, (w_bits, a_bits) in bits.items():
        m = modules.get(name)
        if isinstance(m, FakeQuant):
            m.set_bits(w_bits, a_bits)
            continue
        wrapper_cls = None if m is None else _wrapper_of(m)
        if not name or wrapper_cls is None:
            what = "no such module" if m is None else type(m).__name__
            raise ValueError(
                f"cannot quantize {name!r} ({what}): only named Conv2d/Linear layers "
                "(subclasses with a forward of their own stay in float)"
            )
        parent, _, child = name.rpartition(".")
        wrapper = wrapper_cls.from_float(m, w_bits, a_bits)
        setattr(model.get_submodule(parent), child, wrapper)
    scratch = Scratch()
    for m in quant_layers(model).values():
        m.scratch = scratch
    return model


def set_lsq_(model: nn.Module, on: bool) -> nn.Module:
    """Turn LSQ step-size learning on or off in every fake-quant wrapper of ``model``, in place."""
    for m in quant_layers(model).values():
        m.set_lsq(on)
    return model


class _RangeObserver:
    """Exact min/max of a layer's inputs plus a seeded random subsample of their values."""

    def __init__(self, per_batch: int, seed: int) -> None:
        self.per_batch, self.seed = per_batch, seed
        self.lo = self.hi = self.gen = None
        self.samples: list[Tensor] = []

    def __call__(self, x: Tensor) -> None:
        flat = x.detach().reshape(-1).float()
        lo, hi = flat.min(), flat.max()  # stays on the device: no sync per batch
        self.lo = lo if self.lo is None else torch.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else torch.maximum(self.hi, hi)
        if flat.numel() <= self.per_batch:
            self.samples.append(flat.clone())  # the caller may later modify x in place
            return
        if self.gen is None:
            self.gen = torch.Generator(device=flat.device).manual_seed(self.seed)
        idx = torch.randint(flat.numel(), (self.per_batch,), generator=self.gen, device=flat.device)
        self.samples.append(flat[idx])


def best_act_range(
    samples: Tensor, lo: float, hi: float, bits: int, fractions: Sequence[float]
) -> tuple[float, bool]:
    """(scale, signed) whose clip, a fraction of the observed max, minimizes the sample MSE."""
    signed = lo < 0
    amax = max(abs(lo), hi) if signed else hi
    qlo, qhi = act_qrange(bits, signed)
    zero = torch.zeros((), dtype=torch.int32, device=samples.device)
    scales = (torch.tensor(fractions, device=samples.device) * (amax / qhi)).clamp_min(_MIN_SCALE)
    mse = torch.stack(
        [(fake_quant_act(samples, s, zero, qlo, qhi) - samples).square().mean() for s in scales]
    )
    return scales[mse.argmin()].item(), signed


def _first_tensor(batch: Tensor | Sequence[Tensor]) -> Tensor:
    return batch if isinstance(batch, Tensor) else batch[0]


@torch.no_grad()
def calibrate_(
    model: nn.Module,
    batches: Iterable[Tensor | Sequence[Tensor]],
    num_batches: int | None = None,
    fractions: Sequence[float] = _DEFAULT_FRACTIONS,
    samples_per_batch: int = 2**16,
    seed: int = 0,
    weight_clip: str = "mse",
) -> nn.Module:
    """Set every wrapper's weight scales (clip rule ``weight_clip``) and activation range
    (MSE-best clip over a few batches), in place.

    Batches are tensors or (inputs, ...) tuples, moved to the model's device. Inputs are
    observed with activation quantization off and weight quantization on, in eval mode.
    """
    for m in quant_layers(model).values():
        m.set_weight_scale_(weight_clip)
    layers = {n: m for n, m in quant_layers(model).items() if m.a_bits is not None}
    device = next(model.parameters()).device
    modes = {m: m.training for m in model.modules()}
    for i, m in enumerate(layers.values()):
        m.observer = _RangeObserver(samples_per_batch, seed + i)
    try:
        model.eval()
        for k, batch in enumerate(batches):
            if num_batches is not None and k >= num_batches:
                break
            model(_first_tensor(batch).to(device))
        for name, m in layers.items():
            obs = m.observer
            if obs.lo is None:
                raise ValueError(f"calibration saw no input for layer {name!r}: no batches given?")
            scale, signed = best_act_range(
                torch.cat(obs.samples), obs.lo.item(), obs.hi.item(), m.a_bits, fractions
            )
            m.set_act_range(scale, signed)
    finally:
        for m in layers.values():
            m.observer = None
        for module, mode in modes.items():
            module.training = mode
    return model
