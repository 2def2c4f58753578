"""LAP's latency lookup table: every prunable layer timed at the channel counts a policy allows.

What is measured, stated once:
- Each conv/linear layer of the space is rebuilt alone at every (input channels, output
  channels) pair its groups' keep levels allow, with the kernel, stride, padding and input
  size it has in the model (taken once with forward hooks). A conv entry times
  ``Conv2d -> BatchNorm2d -> ReLU`` (the ResNet/VGG/MobileNet pattern); a linear entry the
  Linear alone. Depthwise convs have one axis (in = out channels).
- Runtime ``torch`` (the default): float models only. Low bit-widths are simulated with fake
  quantization, which runs float kernels, so the table and every prediction are the latency
  of the *pruned float* model; bit-widths do not change it.
- Runtime ``onnxruntime``: the model as it is deployed, its QDQ export run by ONNX Runtime on
  the CPU (``seernet.latency.ort``). Each entry is the layer in QDQ form on ORT's integer
  kernels; every bit-width of the space (2..8) runs on those same kernels. The same layers as
  float convs are timed too (``float_layers``): the kernel a float layer would run on. A
  layer timed alone in ORT pays for converting its input to integers and its output back,
  which inside an integer model it does not; the whole-model fit below absorbs that.
- Bits in ORT: weight bits change nothing at run time (b-bit codes are stored as int8), but
  every input below 8 bits adds a Clip and a requantization (``seernet.compression.onnx_qdq``),
  elementwise ops on that input: ``lowbit_ms + lowbit_ms_per_element x elements`` per such
  layer (elements = input channels x pixels per sample), fitted on whole models, each
  calibration model next to a twin that differs only in its bits (measured: all 19 free
  inputs of ResNet-20 at 4 bits took 0.526 ms against 0.477 at 8 bits, batch 1). So
  in ORT latency *falls* as an input's bits rise from 7 to 8 (and, with ``align_ms``
  below, can fall as a count rises onto ORT's channel blocks): the one cost that is not
  non-decreasing in every coordinate (``seernet.space.costs``).
- ORT grids and whole models are timed in turn (one run of each per round,
  ``ort_runtime.interleaved_times``): timed one after the other, one layer's grid had
  entries jump by 2x between neighbours as the machine drifted.
- Each entry is the median of ``repeats`` timed passes after ``warmup`` ones, at
  ``batch_size`` inputs and ``threads`` torch threads, on ``device``.
- Measured noise can make a larger layer look faster; the table the cost model uses is the
  monotone envelope (each entry = the largest at or below its channel counts), so the
  latency cost is non-decreasing in every coordinate, as the solver requires. Raw medians
  are kept next to it.
- Whatever the layers do not cover (residual adds, pooling, Python dispatch, timing
  overhead) is one constant, and layers timed alone are not exactly as fast as inside the
  model, so the prediction is ``scale * sum(layers) + overhead_ms``: ``scale`` is fitted by
  least squares on ``calibration`` whole pruned models measured at profile time, through
  the unpruned model's point, so the prediction of the unpruned model equals its
  measurement exactly. (A constant alone over-predicted small models by ~25%.) In ORT the
  low-bit terms above and a cost per group whose count breaks ORT's channel blocks are
  fitted with it (``_fit_ort``). How well the fit explains its own models is kept in
  ``checks["calibration"]``.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from predictor.device import torch_threads as threads
from seernet.compression.onnx_residuals import DEFAULT_RESIDUALS, RESIDUAL_MODES
from seernet.errors import UserError
from seernet.latency.timing import measure_latency, time_forward
from seernet.space.costs import CostModel
from seernet.space.policy import Layer, Policy, PolicySpace
from seernet.workspace.artifacts import write_json

ALIGNMENTS = (8, 16)  # channel blocks of ORT's float kernels (AVX2, AVX-512): see _fit_ort
FORMAT = 2  # 2: ORT tables time requantization below 8 bits, models in turn


@dataclass
class LayerEntry:
    """One layer's grid: medians in ms over ``c_in`` x ``c_out`` (ascending channel counts)."""

    c_in: list[int]
    c_out: list[int]
    ms: list[list[float]]  # monotone envelope, used by the cost model
    raw_ms: list[list[float]]  # the medians as measured


@dataclass
class LatencyTable:
    """Per-layer latency grids of one policy space on one device, plus a whole-model constant."""

    space_fingerprint: str
    model: str
    device: str  # human description, e.g. "cpu: AMD EPYC 7B13"
    device_type: str  # "cpu" or "cuda"
    torch_version: str
    threads: int
    batch_size: int
    repeats: int
    warmup: int
    layers: dict[str, LayerEntry]
    full_model_ms: float
    overhead_ms: float
    scale: float = 1.0  # multiplies the sum of layer entries (fitted on whole models)
    seconds: float = 0.0
    checks: dict[str, dict[str, float]] = field(default_factory=dict)
    format: int = FORMAT
    runtime: str = "torch"  # or "onnxruntime": the QDQ model in ORT
    runtime_version: str = ""
    kernels: str = "float (fake quantization is simulated in float)"  # what the entries time
    # onnxruntime: the same layers on float kernels, and the QDQ form timed ("int8" or "float" residuals)
    float_layers: dict[str, LayerEntry] = field(default_factory=dict)
    qdq_residuals: str = ""
    # onnxruntime: what an input below 8 bits adds (its Clip and requantization), per layer:
    # lowbit_ms + lowbit_ms_per_element x (input channels x input pixels); fitted on whole models
    lowbit_ms: float = 0.0
    lowbit_ms_per_element: float = 0.0
    input_pixels: dict[str, int] = field(default_factory=dict)  # per layer: its input's H x W
    # onnxruntime: ms per pruned group whose kept count is not a multiple of N ({"8": ms, "16": ms}),
    # and ms per input element (kept channels x pixels of the layers it feeds) of such a group
    align_ms: dict[str, float] = field(default_factory=dict)
    align_ms_per_element: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> LatencyTable:
        obj = dict(obj)
        obj["layers"] = {k: LayerEntry(**v) for k, v in obj["layers"].items()}
        obj["float_layers"] = {k: LayerEntry(**v) for k, v in obj.get("float_layers", {}).items()}
        return cls(**obj)

    def full_layers_ms(self) -> float:
        """Sum of every layer's entry at full size (the top-right grid corner)."""
        return float(sum(e.ms[-1][-1] for e in self.layers.values()))


def save_table(path: Path, table: LatencyTable) -> None:
    """Write the table as JSON, atomically."""
    write_json(path, table.to_json(), indent=1)


def load_table(path: Path, space: PolicySpace) -> LatencyTable:
    """The table at ``path``, refused (UserError) when missing, corrupt or of another space."""
    if not path.is_file():
        raise UserError(
            f"no latency table {path}: run 'seernet profile-latency --workdir {path.parent}' first"
        )
    try:
        table = LatencyTable.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
        raise UserError(
            f"{path} is not a readable latency table ({exc}); rerun 'seernet profile-latency'"
        ) from exc
    if table.format != FORMAT:
        raise UserError(
            f"{path} has table format {table.format}, this seernet reads {FORMAT}: rerun 'seernet profile-latency'"
        )
    if table.space_fingerprint != space.fingerprint:
        raise UserError(
            f"{path} was profiled for policy space {table.space_fingerprint}, this workspace's is "
            f"{space.fingerprint}: rerun 'seernet profile-latency'"
        )
    missing = [ly.name for ly in space.quant_layers if ly.name not in table.layers]
    if missing:
        raise UserError(f"{path} lacks layers {missing[:3]}: rerun 'seernet profile-latency'")
    return table


# --- the grid ----------------------------------------------------------------------------
def axis_values(full: int, terms: tuple[tuple[int, float], ...], space: PolicySpace) -> list[int]:
    """Channel counts one side of a layer can take, ascending.

    One coupled group (the usual case): exactly its keep levels, scaled by the coupling.
    Several groups (concatenations): as many evenly spaced counts between the smallest and
    the full count as the largest group has levels -- interpolation covers the rest.
    """
    if not terms:
        return [full]
    removable = [(space.groups[g], coef) for g, coef in terms]
    if len(removable) == 1:
        g, coef = removable[0]
        return sorted({round(full - coef * (g.channels - k)) for k in g.keep})
    low = round(full - sum(coef * (g.channels - g.keep[0]) for g, coef in removable))
    n = max(len(g.keep) for g, _ in removable)
    return sorted({round(v) for v in np.linspace(low, full, n)})


def layer_grid(layer: Layer, space: PolicySpace) -> tuple[list[int], list[int]]:
    """(input counts, output counts) to time; depthwise convs get a single input axis point."""
    c_out = axis_values(layer.c_out, layer.out_terms, space)
    c_in = [layer.c_in] if layer.depthwise else axis_values(layer.c_in, layer.in_terms, space)
    return c_in, c_out


def input_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Per-sample input shape of every conv/linear module (one forward pass with hooks)."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []

    def hook(name: str):  # returns a forward hook (which must return None)
        def record(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            shapes.setdefault(name, tuple(inp[0].shape[1:]))

        return record

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            hooks.append(m.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(input_shape, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _block(m: nn.Module, c_in: int, c_out: int, depthwise: bool) -> nn.Module:
    """A fresh layer like ``m`` with other channel counts (plus BN and ReLU for a conv)."""
    if isinstance(m, nn.Linear):
        return nn.Linear(c_in, c_out, bias=m.bias is not None)
    groups = c_out if depthwise else m.groups
    conv = nn.Conv2d(c_in if not depthwise else c_out, c_out, m.kernel_size, m.stride, m.padding, m.dilation,
                     groups=groups, bias=m.bias is not None)  # fmt: skip
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU())


def _signature(m: nn.Module, shape: tuple[int, ...], depthwise: bool) -> tuple:
    """What a timing depends on besides channel counts (equal layers are timed once)."""
    if isinstance(m, nn.Linear):
        return ("linear", m.bias is not None)
    return ("conv", m.kernel_size, m.stride, m.padding, m.dilation, m.groups if not depthwise else "dw",
            m.bias is not None, shape[1:])  # fmt: skip


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {name}"


@dataclass(frozen=True)
class ProfileSettings:
    """How the table is measured; defaults keep ResNet-20 on 28x28 to seconds on a CPU."""

    batch_size: int = 1
    threads: int | None = None  # None: torch's current count
    repeats: int = 25  # layer timings are tens of microseconds: medians need many runs
    warmup: int = 5
    model_runs: int = 100  # whole-model timings behind the overhead constant
    calibration: int = 24  # random pruned models the whole-model terms are fitted on (+ twins)
    runtime: str = "torch"  # or "onnxruntime" (seernet.compression.ort_runtime.RUNTIMES)
    qdq_residuals: str = DEFAULT_RESIDUALS  # onnxruntime: the QDQ form timed, as compress writes it

    def __post_init__(self) -> None:
        from seernet.compression.ort_runtime import RUNTIMES

        if self.runtime not in RUNTIMES:
            raise ValueError(
                f"unknown runtime {self.runtime!r}: choose one of {', '.join(RUNTIMES)}"
            )
        if self.qdq_residuals not in RESIDUAL_MODES:
            raise ValueError(f"qdq residuals must be int8 or float, got {self.qdq_residuals!r}")
        # A first, cold pass (allocation, kernel selection) can take many times a warm one.
        if (
            self.batch_size < 1
            or self.repeats < 1
            or self.warmup < 1
            or self.model_runs < 1
            or self.calibration < 0
        ):
            raise ValueError(
                "need batch size >= 1, repeats >= 1, warmup >= 1, model runs >= 1 and calibration >= 0"
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


def _monotone(raw: np.ndarray) -> np.ndarray:
    """Largest entry at or below each (c_in, c_out): cumulative max along both axes."""
    return np.maximum.accumulate(np.maximum.accumulate(raw, axis=0), axis=1)


def profile(
    model: nn.Module, space: PolicySpace, model_name: str, settings: ProfileSettings, device: torch.device,
    bar=None,  # a tqdm bar, updated once per timed grid point
) -> LatencyTable:  # fmt: skip
    """Measure the table of ``space`` (model = its architecture; weights do not matter)."""
    start = time.perf_counter()
    model = model.to(device).eval()
    ort = settings.runtime == "onnxruntime"
    if ort and device.type != "cpu":
        raise UserError("--runtime onnxruntime times ONNX Runtime's CPU kernels: use --device cpu")
    with threads(settings.threads) as n_threads:
        n_threads = (
            (settings.threads or 1) if ort else n_threads
        )  # ORT: intra-op threads, 1 unless asked
        layers = _grid(model, space, settings, device, n_threads, bar, quantized=ort)
        float_layers = (
            _grid(model, space, settings, device, n_threads, bar, quantized=False) if ort else {}
        )
        # ORT: the unpruned model is timed in turn with the calibration models (calibrate_)
        full = 0.0 if ort else whole_model_ms(model, space, space.full_policy(), settings.batch_size,
                                              settings.model_runs, settings.warmup, device)  # fmt: skip
    table = LatencyTable(
        space.fingerprint, model_name, device_description(device), device.type, torch.__version__, n_threads,
        settings.batch_size, settings.repeats, settings.warmup, layers, full, 0.0, runtime=settings.runtime,
        float_layers=float_layers, qdq_residuals=settings.qdq_residuals if ort else "",
    )  # fmt: skip
    if ort:
        from seernet.compression.ort_runtime import require_onnxruntime

        table.runtime_version = require_onnxruntime().__version__
        table.kernels = ("QDQ on ORT's integer kernels, the same at every bit-width 2..8 "
                         "(b-bit codes in int8/uint8); float_layers: the float kernels")  # fmt: skip
    with threads(settings.threads):
        calibrate_(table, model, space, settings, device)
    table.seconds = time.perf_counter() - start
    return table


def _grid(
    model: nn.Module, space: PolicySpace, settings: ProfileSettings, device: torch.device, n_threads: int,
    bar, quantized: bool,  # a tqdm bar or None
) -> dict[str, LayerEntry]:  # fmt: skip
    """Every layer's grid: torch float blocks, or ORT blocks (QDQ when ``quantized``, else float)."""
    ort = settings.runtime == "onnxruntime"
    if ort:
        from seernet.latency.ort import requantized_layers

        requantized = requantized_layers(model, space, settings.qdq_residuals)
    shapes = input_shapes(model, space.input_shape)
    cache: dict[tuple, float] = {}
    layers: dict[str, LayerEntry] = {}
    gen = torch.Generator().manual_seed(0)
    for ly in space.quant_layers:
        m = model.get_submodule(ly.name)
        sig = (_signature(m, shapes[ly.name], ly.depthwise), ort and ly.name in requantized)
        c_in, c_out = layer_grid(ly, space)
        new = [(ci, co) for ci in c_in for co in c_out if (sig, ci, co) not in cache]
        blocks = [_block(m, ci, co, ly.depthwise).to(device).eval() for ci, co in new]
        xs = [torch.randn((settings.batch_size, co if ly.depthwise else ci, *shapes[ly.name][1:]),
                          generator=gen).to(device) for ci, co in new]  # fmt: skip
        for key, ms in zip(new, _time_blocks(blocks, xs, settings, n_threads, quantized, sig[1]),
                           strict=True):  # fmt: skip
            cache[(sig, *key)] = ms
        raw = np.array([[cache[(sig, ci, co)] for co in c_out] for ci in c_in])
        if bar is not None:
            bar.update(raw.size)
        layers[ly.name] = LayerEntry(c_in, c_out, _monotone(raw).tolist(), raw.tolist())
    return layers


def _time_blocks(blocks: list[nn.Module], xs: list[torch.Tensor], settings: ProfileSettings, n_threads: int,
                 quantized: bool, requantize: bool) -> list[float]:  # fmt: skip
    """Median ms of each block: in ORT all of a layer's grid points take turns (one run each
    per round), so the machine's drift during the profile does not bend one layer's grid;
    in torch one after the other."""
    if not blocks:
        return []
    if settings.runtime == "onnxruntime":
        from seernet.latency.ort import blocks_ms

        return blocks_ms(blocks, [x.cpu() for x in xs], quantized, requantize, settings.repeats,
                         settings.warmup, n_threads)  # fmt: skip
    return [statistics.median(time_forward(b, x, settings.repeats, settings.warmup))
            for b, x in zip(blocks, xs, strict=True)]  # fmt: skip


def whole_model_ms(
    model: nn.Module, space: PolicySpace, policy: Policy, batch_size: int, runs: int, warmup: int,
    device: torch.device | str, runtime: str = "torch", n_threads: int | None = None, residuals: str = "int8",
) -> float:  # fmt: skip
    """Measured median ms of ``policy``'s pruned model: float in torch, or its QDQ form in ORT."""
    from seernet.compression.prune import prune_model

    if runtime == "onnxruntime":
        from seernet.latency.ort import model_ms

        return float(
            model_ms(model, space, policy, batch_size, runs, warmup, n_threads or 1, residuals)
        )
    pruned = prune_model(model, space, policy, "l1")  # shapes, not which channels, set the latency
    return float(
        measure_latency(pruned, space.input_shape, batch_size, runs, warmup, device)["median_ms"]
    )


def calibrate_(table: LatencyTable, model: nn.Module, space: PolicySpace, settings: ProfileSettings,
               device: torch.device) -> None:  # fmt: skip
    """Fit the whole-model terms on pruned models timed now: in torch ``scale`` (and so
    ``overhead_ms``) anchored at the unpruned model; in ORT every term of ``_fit_ort``, on
    the unpruned model, the calibration models and a low-bit twin of each, timed in turn."""
    ort = table.runtime == "onnxruntime"
    models = calibration_models(space, settings.calibration, ort)
    base, twins = models[1 : 1 + settings.calibration], models[1 + settings.calibration :]
    measured = measured_latencies_ms(model.to(device), space, models, table, settings.model_runs)
    if ort:  # timed in turn with the others: the unpruned model shares their stretch of the machine
        table.full_model_ms = measured[0]
        table.input_pixels = {k: int(np.prod(v[1:])) for k, v in input_shapes(model, space.input_shape).items()
                              if k in table.layers}  # fmt: skip
        _fit_ort(table, space, models, measured)
    else:
        _fit_scale(table, space, base, measured[1:])
    _record_fit(table, space, [*base, *twins], measured[1:])


def calibration_models(space: PolicySpace, n: int, ort: bool) -> list[Policy]:
    """What ``calibrate_`` times: the unpruned model, ``n`` random pruned ones
    (``calibration_points``) and, in ORT, at the top bits with a low-bit twin of each."""
    rng = np.random.default_rng(0)
    base = [space.decode(at_top_bits(x, space)) if ort else space.decode(x)
            for x in calibration_points(space, n, rng)]  # fmt: skip
    twins = [low_bit_twin(p, space, rng) for p in base] if ort else []
    return [space.full_policy(), *base, *twins]


def calibration_points(space: PolicySpace, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` encoded policies of random level indices, each around its own overall size
    (k/n of the way up), so small and large models are both seen."""
    sizes = [len(v) for v in space.levels()]
    out = []
    for k in range(n):
        u = np.clip((k + rng.random()) / max(n, 1) + 0.25 * (rng.random(len(sizes)) - 0.5), 0, 1)
        out.append(
            np.array(
                [
                    lv[min(int(q * m), m - 1)]
                    for q, m, lv in zip(u, sizes, space.levels(), strict=True)
                ]
            )
        )
    return out


def low_bit_twin(policy: Policy, space: PolicySpace, rng: np.random.Generator) -> Policy:
    """``policy`` with the bits of every free layer drawn from the space's choices, half of
    the inputs (on average) below the top: the same channels, another bit pattern."""
    bits = dict(policy.bits)
    choices = space.choices.bits
    for ly in space.free_layers:
        low = choices[int(rng.integers(len(choices) - 1))] if len(choices) > 1 else choices[-1]
        a = low if rng.random() < 0.5 else choices[-1]
        bits[ly.name] = (int(choices[int(rng.integers(len(choices)))]), int(a))
    return Policy(dict(policy.channels), bits)


def _layer_sums(table: LatencyTable, space: PolicySpace, policies: list[Policy]) -> np.ndarray:
    costs = CostModel(space, latency=table)
    x = torch.as_tensor(np.stack([space.encode(p) for p in policies]))
    return costs.layer_latency(x).sum(1).numpy()


def _fit_scale(
    table: LatencyTable, space: PolicySpace, policies: list[Policy], measured: list[float]
) -> None:
    """Least-squares slope of measured on summed layers, through the unpruned model's point
    (torch tables; ORT tables fit more terms, ``_fit_ort``)."""
    table.scale, table.overhead_ms = 1.0, table.full_model_ms - table.full_layers_ms()
    if not policies:
        return
    ds = _layer_sums(table, space, policies) - table.full_layers_ms()
    dy = np.array(measured) - table.full_model_ms
    slope = float((ds * dy).sum() / (ds * ds).sum()) if (ds * ds).sum() > 0 else 1.0
    if slope > 0:  # a noisy fit must not make latency fall as channels are added
        table.scale = slope
        table.overhead_ms = table.full_model_ms - slope * table.full_layers_ms()


def _fit_ort(
    table: LatencyTable, space: PolicySpace, policies: list[Policy], measured: list[float]
) -> None:
    """Every whole-model term at once, by least squares over the calibration and twin models,
    through the unpruned model's point (``policies[0]``, predicted exactly, so a budget in %
    of it means that share of its measured time): non-negative weights on the summed layers,
    the low-bit inputs and their elements, and the groups off each ``ALIGNMENTS`` multiple and
    their elements (``CostModel.misaligned_elements``).

    Why these: ORT runs float convs in a blocked layout (NCHWc, 8 or 16 channels a block with
    AVX2 or AVX-512) and reorders tensors where a count breaks it, which layers timed alone
    do not show. Measured on ResNet-20 at batch 1 (30 models, leave-one-out): the layer sum
    alone missed by 5.0% (median) and 18% (max), with the groups off 16 added 2.9% and 10%;
    a pruned model with counts like 56 and 14 ran slower than the unpruned one. Why through
    the unpruned point: fitted freely, the unpruned model (every count on a block) came out
    9% slow, while the answers scored 2.3% against 3.7% through it. Why elements too: a
    reorder moves the tensor, so at batch 64 its cost grows with the channels and pixels it
    moves; with a constant per group alone the fit read it as an intercept, and the latency
    budgets' answers (counts on blocks) were predicted 11-21% faster than measured (the
    FLOPs budgets' answers within 10%). Refitted on the calibration models of one timing set
    (batch 64), the answers' median error went 4.9% -> 2.1% (docs/results.md)."""
    from scipy.optimize import lsq_linear

    table.align_ms = dict.fromkeys(map(str, ALIGNMENTS), 0.0)
    table.align_ms_per_element = dict.fromkeys(map(str, ALIGNMENTS), 0.0)
    costs = CostModel(space, latency=table)
    x = torch.as_tensor(np.stack([space.encode(p) for p in policies]))
    with torch.no_grad():
        cols = [costs.layer_latency(x).sum(1), *costs.low_bit_features(x),
                *(costs.misaligned_groups(x, m) for m in ALIGNMENTS),
                *(costs.misaligned_elements(x, m) for m in ALIGNMENTS)]  # fmt: skip
    design = np.column_stack([c.numpy() for c in cols])
    y = np.asarray(measured)
    coef = np.r_[1.0, np.zeros(design.shape[1] - 1)]  # --calibration 0: the layer sum as timed
    if len(y) > 1:
        coef = lsq_linear(
            design[1:] - design[0], y[1:] - y[0], bounds=(0.0, np.inf), method="bvls"
        ).x
    table.scale, table.lowbit_ms, table.lowbit_ms_per_element = map(float, coef[:3])
    k = len(ALIGNMENTS)
    table.align_ms = {str(m): float(v) for m, v in zip(ALIGNMENTS, coef[3 : 3 + k], strict=True)}
    table.align_ms_per_element = {
        str(m): float(v) for m, v in zip(ALIGNMENTS, coef[3 + k :], strict=True)
    }
    table.overhead_ms = float(y[0] - design[0] @ coef)


def _record_fit(
    table: LatencyTable, space: PolicySpace, policies: list[Policy], measured: list[float]
) -> None:
    """How far the fitted table is from the whole models it was fitted on (relative errors)."""
    if not policies:
        return
    costs = CostModel(space, latency=table)
    x = torch.as_tensor(np.stack([space.encode(p) for p in policies]))
    err = 100 * (costs.latency(x).numpy() / np.array(measured) - 1)
    table.checks["calibration"] = {"models": float(len(err)), "median_abs_error_pct": float(np.median(np.abs(err))),
                                   "max_abs_error_pct": float(np.abs(err).max())}  # fmt: skip


def at_top_bits(x: np.ndarray, space: PolicySpace) -> np.ndarray:
    """Encoded policy ``x`` with every bit-width at the space's highest choice (8 bits).

    An ORT table's layer scale is fitted on 8-bit models: at b < 8 bits the QDQ form adds a
    Clip and a requantization per input (``seernet.compression.onnx_qdq``), which the low-bit
    terms, fitted on twins of these models, account for.
    """
    x = np.array(x, dtype=float)
    x[space.n_groups :] = 1.0  # the top of each bit axis (levels span 0..1)
    return x


def grid_points(space: PolicySpace) -> int:
    """Timed grid points before de-duplication (an upper bound for a progress bar)."""
    return sum(len(a) * len(b) for a, b in (layer_grid(ly, space) for ly in space.quant_layers))


# --- queries (for solve --verify and benchmarks) -----------------------------------------
def predicted_latency_ms(space: PolicySpace, table: LatencyTable, policy: Policy) -> float:
    """Latency of ``policy``'s pruned model predicted from the table, in ms (float, or QDQ in ORT: ``table.runtime``)."""
    return CostModel(space, latency=table).of_policy(policy)["latency"]


def budget_share(share: float, budget_ms: float, unpruned_table_ms: float) -> dict:
    """A latency budget judged as a share of the unpruned model: ``share`` (the policy's time
    over the unpruned model's, timed together) against ``budget_ms`` over the table's unpruned
    latency. On a machine whose speed drifts it still says whether the policy is as much
    faster as asked."""
    allowed = budget_ms / unpruned_table_ms
    return {"share_measured": share, "share_allowed": allowed, "held_as_share": share <= allowed}


def measured_share(
    model: nn.Module, space: PolicySpace, policy: Policy, table: LatencyTable, runs: int = 30
) -> tuple[float, float, float]:
    """``policy``'s median ms and the unpruned model's, timed in turn as the table was
    measured, and the policy's share of the unpruned model's time (in ORT the paired
    ``paired_ratio``; in torch the ratio of the medians)."""
    pair = [policy, space.full_policy()]
    if table.runtime != "onnxruntime":
        ms, full = measured_latencies_ms(model, space, pair, table, runs)
        return ms, full, ms / full
    from seernet.compression.ort_runtime import paired_ratio

    times = _ort_times(model, space, pair, table, runs)
    ms, full = (statistics.median(t) for t in times)
    return ms, full, paired_ratio(*times)


def _ort_times(
    model: nn.Module, space: PolicySpace, policies: list[Policy], table: LatencyTable, runs: int
) -> list[list[float]]:
    """Every timed run of each policy's QDQ model in ORT, timed in turn as ``table`` was
    measured (its batch, warm-up, threads and residual form)."""
    from seernet.latency.ort import models_times

    return models_times(model, space, policies, table.batch_size, runs, table.warmup,
                        table.threads or 1, table.qdq_residuals or "float")  # fmt: skip


def measured_latency_ms(
    model: nn.Module, space: PolicySpace, policy: Policy, table: LatencyTable | None = None, runs: int = 30,
) -> float:  # fmt: skip
    """Measured median ms of ``policy``'s pruned model as the table was measured: batch, threads,
    device and runtime (float in torch, or the QDQ model in ORT).

    Without a table: the float model, batch 1 on the CPU with torch's current threads.
    """
    return measured_latencies_ms(model, space, [policy], table, runs)[0]


def measured_latencies_ms(
    model: nn.Module, space: PolicySpace, policies: list[Policy], table: LatencyTable | None = None,
    runs: int = 30,
) -> list[float]:  # fmt: skip
    """``measured_latency_ms`` of several policies; in ORT their models are timed in turn."""
    if table is not None and table.runtime == "onnxruntime":
        return [statistics.median(t) for t in _ort_times(model, space, policies, table, runs)]
    batch, n_threads, device = (
        (table.batch_size, table.threads, table.device_type) if table else (1, None, "cpu")
    )
    warmup = table.warmup if table else 3
    runtime = table.runtime if table else "torch"
    residuals = (table.qdq_residuals or "float") if table else "float"
    with threads(n_threads):
        return [whole_model_ms(model, space, p, batch, runs, warmup, device, runtime, n_threads, residuals)
                for p in policies]  # fmt: skip
