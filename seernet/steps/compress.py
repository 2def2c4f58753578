"""``compress``: one solved policy -> pruned, quantized, fine-tuned and exported model.

The model is built exactly as samples are measured (``seernet.compression.protocol.build_compressed``:
prune, adaptive BN, fake quantization, calibration), then fine-tuned with quantization in
the loop (QAT: step sizes learned with LSQ, distilled from the float base model) on a
cosine schedule, and exported to ``WORKDIR/compressed/<name>/``:
``model.pt`` (TorchScript), ``model.onnx`` (fake quantization as float ops),
``model.qdq.onnx`` (QuantizeLinear/DequantizeLinear form that ONNX Runtime runs on integer
kernels, ``seernet.compression.onnx_qdq``), ``packed.bin`` (integer weight codes) and ``metrics.json``.
With onnxruntime installed, metrics also hold ORT's CPU latency of the float base, float
pruned and QDQ models, and the QDQ model's test accuracy in ORT and its top-1 agreement with
seernet's simulation. Outputs appear only once complete: they are written to a hidden staging
folder that is renamed at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from seernet.compression.export import (
    deployable,
    export_onnx,
    export_torchscript,
    load_packed,
    save_packed,
)
from seernet.compression.onnx_qdq import export_qdq
from seernet.compression.onnx_residuals import DEFAULT_RESIDUALS, RESIDUAL_MODES
from seernet.compression.protocol import Protocol, build_compressed
from seernet.compression.quant import set_lsq_
from seernet.data.datasets import DataSplits
from seernet.data.loaders import batches
from seernet.data.train import cosine_lr, sgd, train_steps
from seernet.errors import UserError
from seernet.latency.timing import latency_table
from seernet.space.policy import Policy, PolicySpace
from seernet.space.policy_document import PolicyDocument, as_document
from seernet.steps.context import RunContext
from seernet.workspace.artifacts import write_json

DEFAULT_STEPS = (
    250  # ~0.6 epoch of Fashion-MNIST: about 2 of compress's ~3 minutes on 2 busy CPU cores
)
# Half label cross-entropy, half KL to the float base model: at 250 steps it measured better than
# labels alone on W2A2 and W2A4 (benchmarks/bench_lowbit.py --set distill=0.5); costs one float
# forward of the base model per step.
DEFAULT_DISTILL = 0.5
_SAFE_NAME = re.compile(r"[A-Za-z0-9][\w.%+=-]*")


@dataclass(frozen=True)
class CompressSettings:
    """Fine-tuning and measurement settings of ``seernet compress``."""

    epochs: float | None = None  # fine-tune this many epochs, or
    steps: int | None = None  # this many steps; neither given: DEFAULT_STEPS
    lr: float = 0.01
    batch_size: int = 128
    weight_decay: float = 5e-4
    seed: int = 0
    criterion: str = "l1"
    bn_batches: int = 8
    latency_runs: int = 20
    ort_threads: int = 1  # intra-op threads of the ONNX Runtime timings
    # model.qdq.onnx: "float" is the exact form (residual-branch convs run in float on constant
    # weights); "int8" quantizes their outputs too, so ORT runs every conv on integer kernels: no
    # faster since the float convs' weights are constants (docs/deploy-onnxruntime.md), and an
    # approximation (top-1 agreement 98.66% against 99.93% on the main job's mixed policy).
    qdq_residuals: str = DEFAULT_RESIDUALS
    # Learn the quantizers' step sizes (LSQ) from the calibrated ones: at 250 steps it measured
    # better than frozen steps on W2A2 and W2A4 (benchmarks/bench_lowbit.py --set lsq=false).
    lsq: bool = True
    distill: float = (
        DEFAULT_DISTILL  # weight of the KL to the float base model's soft logits (0: labels only)
    )
    temperature: float = 4.0  # softening of both logits in the distillation term

    def __post_init__(self) -> None:
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give --epochs or --steps, not both")
        if (self.epochs is not None and self.epochs < 0) or (
            self.steps is not None and self.steps < 0
        ):
            raise ValueError("--epochs and --steps must be >= 0")
        if self.lr <= 0 or self.batch_size < 1 or self.bn_batches < 1 or self.latency_runs < 1:
            raise ValueError("need lr > 0, batch size >= 1, bn batches >= 1 and latency runs >= 1")
        if (
            isinstance(self.ort_threads, bool)
            or not isinstance(self.ort_threads, int)
            or self.ort_threads < 1
        ):
            raise ValueError(f"--ort-threads must be an int >= 1, got {self.ort_threads!r}")
        if self.qdq_residuals not in RESIDUAL_MODES:
            raise ValueError(f"--qdq-residuals must be int8 or float, got {self.qdq_residuals!r}")
        if (
            isinstance(self.distill, bool)
            or not isinstance(self.distill, (int, float))
            or not 0.0 <= self.distill <= 1.0
        ):
            raise ValueError(
                f"--distill must be a number in 0..1 (0: no distillation), got {self.distill!r}"
            )
        if (
            isinstance(self.temperature, bool)
            or not isinstance(self.temperature, (int, float))
            or not self.temperature > 0
        ):
            raise ValueError(f"--temperature must be a number > 0, got {self.temperature!r}")
        if not isinstance(self.lsq, bool):
            raise ValueError(f"lsq must be true or false, got {self.lsq!r}")

    def total_steps(self, steps_per_epoch: int) -> int:
        if self.epochs is not None:
            return round(self.epochs * steps_per_epoch)
        return DEFAULT_STEPS if self.steps is None else self.steps

    def protocol(self) -> Protocol:
        """The evaluation protocol that builds the model (its own fine-tuning unused)."""
        return Protocol(self.bn_batches, 0, self.batch_size, self.lr, self.weight_decay,
                        criterion=self.criterion, seed=self.seed)  # fmt: skip


# --- reading the policy ------------------------------------------------------------------
def check_document(doc: PolicyDocument, space: PolicySpace) -> None:
    """A UserError unless ``doc``'s name can be a folder and its policy is valid in ``space``."""
    where = str(doc.path or f"policy {doc.name!r}")
    if not isinstance(doc.name, str) or not _SAFE_NAME.fullmatch(doc.name):
        raise UserError(
            f"{where}: policy name {doc.name!r} is not usable as a folder name (letters, digits, _.%+=-)"
        )
    if doc.space_fingerprint != space.fingerprint:
        raise UserError(
            f"{where} was solved for policy space {doc.space_fingerprint}, this workspace's is "
            f"{space.fingerprint}: compress it in its own workspace, or solve again here"
        )
    policy = doc.policy
    unknown = sorted(set(policy.channels) - {g.name for g in space.groups})
    unknown += sorted(set(policy.bits) - {ly.name for ly in space.quant_layers})
    if unknown:
        raise UserError(
            f"{where}: the policy names {unknown[0]!r}, which this model's space does not have"
        )
    try:
        space.validate(policy)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from exc


# --- fine-tuning -------------------------------------------------------------------------
def finetune(
    model: nn.Module, splits: DataSplits, settings: CompressSettings, device: torch.device,
    teacher: nn.Module | None = None,
) -> list[dict[str, float]]:  # fmt: skip
    """QAT on a cosine schedule over the whole run; val accuracy after every epoch (and at the end).

    Step sizes are learned when ``settings.lsq`` (frozen again at the end); with a
    ``teacher`` (the float base model) and ``settings.distill`` > 0 the loss mixes label
    cross-entropy with KL to the teacher's temperature-softened logits.
    """
    torch.manual_seed(settings.seed)
    data = batches(
        splits.train,
        settings.batch_size,
        shuffle=True,
        seed=settings.seed + 1,
        train_augment=splits.augment,
    )
    per_epoch = len(data)
    total = settings.total_steps(per_epoch)
    set_lsq_(model, settings.lsq)
    opt = sgd(model, settings.lr, settings.weight_decay)
    history, done = [], 0
    # Distillation matches class logits: a user's own task fine-tunes on its loss alone.
    kd = (
        {"teacher": teacher, "distill": settings.distill, "temperature": settings.temperature}
        if splits.task.is_classification
        else {"loss_fn": splits.task.criterion}
    )
    with tqdm(total=total, desc="QAT fine-tune", unit="step", dynamic_ncols=True) as bar:
        while done < total:
            chunk = min(per_epoch, total - done)  # whole epochs: each chunk starts a fresh pass
            lr_at = lambda s, o=done: cosine_lr(o + s, total, settings.lr)  # noqa: E731
            train_steps(model, data, device, opt, lr_at, chunk, bar, **kd)
            done += chunk
            history.append(
                {
                    "step": done,
                    "epoch": done / per_epoch,
                    "val_accuracy": splits.task.score(model, splits.val, device),
                }
            )
            bar.write(  # on stderr with the bar, so stdout holds only the result (--json)
                f"epoch {done / per_epoch:.2f}/{total / per_epoch:.2f}: val accuracy {history[-1]['val_accuracy']:.2f}%",
                file=sys.stderr,
            )
    set_lsq_(model, False)
    model.eval()
    return history


# --- exports -----------------------------------------------------------------------------
def packed_meta(ctx: RunContext, doc: PolicyDocument, policy: Policy) -> dict[str, Any]:
    """What ``load_packed`` needs to rebuild the pruned architecture."""
    sp, space = ctx.splits, ctx.space
    return {
        "model": ctx.config.model, "num_classes": sp.num_classes, "in_channels": sp.in_channels,
        "input_shape": list(space.input_shape), "choices": asdict(space.choices),
        "space_fingerprint": space.fingerprint, "policy": policy.to_json(), "name": doc.name,
    }  # fmt: skip


def export_all(
    model: nn.Module, ctx: RunContext, doc: PolicyDocument, policy: Policy, folder: Path,
    settings: CompressSettings | None = None,
) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """Write model.pt, model.onnx, model.qdq.onnx and packed.bin; check they reproduce ``model`` on val images."""
    from seernet.compression.ort_runtime import has_onnxruntime

    settings = settings or CompressSettings()
    x = torch.stack([ctx.splits.val[i][0] for i in range(min(8, len(ctx.splits.val)))])
    plain = deployable(model).cpu()
    export_torchscript(plain, x[:2], folder / "model.pt")
    note = export_onnx(plain, x[:2], folder / "model.onnx")
    notes = [note] if note else []
    if note is None:  # onnx is there: the QDQ form too
        residuals = settings.qdq_residuals
        if residuals == "int8" and not has_onnxruntime():  # its ranges are calibrated in ORT
            residuals = "float"
            notes.append(
                "onnxruntime is not installed: model.qdq.onnx keeps float residual branches"
            )
        # The calibration batches of the simulation's own activation ranges (build_compressed).
        calib = batches(ctx.splits.train, settings.batch_size, shuffle=True, seed=settings.seed)
        images = torch.cat([b[0] for b, _ in zip(calib, range(2), strict=False)])
        export_qdq(model, x[:2], folder / "model.qdq.onnx", residuals, images)
    save_packed(model, folder / "packed.bin", packed_meta(ctx, doc, policy))
    return check_exports(model, x, folder, ctx.device, ctx.model), notes


@torch.no_grad()
def check_exports(
    model: nn.Module, x: torch.Tensor, folder: Path, device: torch.device, base: nn.Module | None = None
) -> dict[str, float]:  # fmt: skip
    """Largest output difference of the TorchScript and packed exports from ``model`` on ``x``."""
    import warnings

    ref = model.eval()(x.to(device)).cpu()
    packed = load_packed(folder / "packed.bin", arch=base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        script = torch.jit.load(str(folder / "model.pt"))
    return {
        "torchscript_max_abs_diff": (script(x) - ref).abs().max().item(),
        "packed_max_abs_diff": (packed(x) - ref).abs().max().item(),
    }


def file_sizes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}


def float_bytes(model: nn.Module) -> int:
    """Bytes of a model's tensors as stored in float (its state dict's raw size)."""
    return sum(
        t.numel() * t.element_size()
        for t in model.state_dict().values()
        if isinstance(t, torch.Tensor)
    )


# --- orchestration -----------------------------------------------------------------------
class _Clock:
    """Seconds per phase, for metrics.json."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(now - self.last, 2)
        self.last = now

    def total(self) -> dict[str, float]:
        return {**self.seconds, "total": round(time.perf_counter() - self.start, 2)}


def _accuracies(model: nn.Module, splits: DataSplits, device: torch.device) -> dict[str, float]:
    return {
        "val": splits.task.score(model, splits.val, device),
        "test": splits.task.score(model, splits.test, device),
    }


def tune_and_evaluate(
    model: nn.Module, splits: DataSplits, settings: CompressSettings, device: torch.device, clock: _Clock,
    teacher: nn.Module | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Val and test accuracy before and after QAT fine-tuning, and the val history."""
    before = _accuracies(model, splits, device)
    clock.lap("evaluate_before")
    history = finetune(model, splits, settings, device, teacher)
    clock.lap("finetune")
    val = history[-1]["val_accuracy"] if history else before["val"]  # measured at the last step
    after = {"val": val, "test": splits.task.score(model, splits.test, device)}
    clock.lap("evaluate_after")
    return {"before_finetune": before, "after_finetune": after, "val_history": history}


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A hidden sibling folder to write into, renamed to ``out`` only if the block succeeds."""
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        shutil.rmtree(out, ignore_errors=True)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def compress(
    ctx: RunContext, doc: PolicyDocument | dict[str, Any], policy: Policy, settings: CompressSettings,
    source: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Build, fine-tune, evaluate and export one policy; returns the metrics written to metrics.json.

    ``doc`` may be the document's JSON object (benchmarks build their own)."""
    return compress_model(ctx, doc, policy, settings, source)[1]


def compress_model(
    ctx: RunContext, doc: PolicyDocument | dict[str, Any], policy: Policy, settings: CompressSettings,
    source: Path | None = None,
) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
    """``compress``, also returning the fine-tuned compressed model (fake-quantized, eval mode)."""
    doc = as_document(doc)
    clock = _Clock()
    protocol = settings.protocol()
    model = build_compressed(
        ctx.model, ctx.space, policy, ctx.splits, protocol, ctx.device,
        ctx.criterion(protocol.criterion),
    )  # fmt: skip
    clock.lap("build")
    acc = tune_and_evaluate(model, ctx.splits, settings, ctx.device, clock, teacher=ctx.model)
    out = ctx.ws.path("compressed", doc.name)
    with staged(out) as folder:
        check, notes = export_all(model, ctx, doc, policy, folder, settings)
        clock.lap("export")
        latency = measure_variants(ctx, model, settings.latency_runs)
        clock.lap("latency")
        ort, ort_note = ort_metrics(ctx, model, folder / "model.qdq.onnx", settings)
        notes += [ort_note] if ort_note else []
        clock.lap("onnxruntime")
        held, held_note = latency_budget(ctx, model, doc, folder / "model.qdq.onnx", settings)
        notes += [held_note] if held_note else []
        metrics = {
            "name": doc.name, "policy_file": str(source) if source else None, "folder": str(out),
            "model": ctx.config.model, "space_fingerprint": ctx.space.fingerprint, "device": str(ctx.device),
            "settings": asdict(settings), "finetune_steps": acc["val_history"][-1]["step"] if acc["val_history"] else 0,
            "accuracy": acc, "predicted": doc.predicted.to_json() if doc.predicted else None,
            "costs": ctx.costs.of_policy(policy), "unpruned": ctx.costs.unpruned(),
            "base_float_bytes": float_bytes(ctx.model), "files": file_sizes(folder), "export_check": check,
            "latency": latency, "onnxruntime": ort, "latency_budget": held,
            "notes": [*notes, LATENCY_NOTE], "seconds": clock.total(),
        }  # fmt: skip
        write_json(folder / "metrics.json", metrics)
    return model, metrics


LATENCY_NOTE = (
    "latency: 'compressed (fake-quant)' only simulates low-bit arithmetic (extra float ops per layer), "
    "so its time says nothing about low-bit inference; 'compressed (float)' is the same pruned model in "
    "float, the deployable number on a CPU without low-bit kernels"
)


def latency_budget(
    ctx: RunContext, model: nn.Module, doc: PolicyDocument, qdq_path: Path, settings: CompressSettings
) -> tuple[dict[str, Any] | None, str | None]:  # fmt: skip
    """Whether the policy's latency budget holds by measurement, where its table was made:
    the deployed model (the pruned float model for a torch table, the QDQ export in ONNX
    Runtime for an onnxruntime one) timed at the table's batch size and thread count.
    (None, None) when the policy had no latency budget; (None, a note) when it cannot be timed."""
    from predictor.device import torch_threads
    from seernet.compression.ort_runtime import has_onnxruntime, load_average
    from seernet.latency.timing import measure_latency

    budget, table = doc.budgets.get("latency"), doc.latency_table
    if budget is None or table is None:
        return None, None
    batch, threads, runtime = table["batch_size"], table["threads"], table["runtime"]
    shape = ctx.space.input_shape
    share = None
    if runtime == "onnxruntime":
        if not has_onnxruntime() or not qdq_path.is_file():
            return None, "onnxruntime is not installed: the latency budget was not checked"
        ms, share = _ort_budget_times(ctx, qdq_path, doc, table, settings.latency_runs)
    else:
        # the table names its device in words ("cpu: <processor>", or the GPU's name)
        device = "cpu" if str(table["device"]).startswith("cpu") else ctx.device
        with torch_threads(threads):
            ms = measure_latency(deployable(model, quantized=False), shape, batch,
                                 settings.latency_runs, device=device)  # fmt: skip
    out = {"budget_ms": budget, "measured_ms": ms["median_ms"], "held": ms["median_ms"] <= budget,
           "runtime": runtime, "batch_size": batch, "threads": threads, "runs": settings.latency_runs,
           "load_average_1min": load_average(), **(share or {})}  # fmt: skip
    form = table.get("qdq_residuals")
    note = None
    if runtime == "onnxruntime" and form and form != settings.qdq_residuals:
        note = (f"the latency table timed the {form}-residual QDQ form, this export is the "
                f"{settings.qdq_residuals} one: the budget check times the export")  # fmt: skip
    return out, note


def _ort_budget_times(ctx: RunContext, qdq_path: Path, doc: PolicyDocument, table: dict, runs: int
                      ) -> tuple[dict[str, float], dict[str, Any]]:  # fmt: skip
    """The export's ORT time at the table's batch and threads, timed in turn with the unpruned
    model's QDQ form; and the budget judged as a share of the unpruned model: on a machine
    whose speed drifts (this project's VM: the same model 0.32-0.43 ms within a minute) the
    share measured with both timed together says whether the policy is as much faster as
    the budget asked, whatever the machine's speed since profiling."""
    from seernet.compression.ort_runtime import (
        interleaved_times,
        paired_ratio,
        random_input,
        session,
        summary,
    )
    from seernet.latency.ort import policy_qdq
    from seernet.latency.table import budget_share

    threads = table["threads"]
    unpruned = policy_qdq(
        ctx.model, ctx.space, ctx.space.full_policy(), table.get("qdq_residuals") or "float"
    )
    sessions = {"answer": session(qdq_path, threads), "unpruned": session(unpruned, threads)}
    times = interleaved_times(
        sessions, random_input(ctx.space.input_shape, table["batch_size"]), runs, 3
    )
    ms, full = summary(times["answer"]), summary(times["unpruned"])["median_ms"]
    share = paired_ratio(times["answer"], times["unpruned"])
    out: dict[str, Any] = {"unpruned_measured_ms": full, "share_measured": share}
    if doc.unpruned.get("latency"):
        out.update(budget_share(share, doc.budgets["latency"], doc.unpruned["latency"]))
    return ms, out


def ort_metrics(
    ctx: RunContext, model: nn.Module, qdq_path: Path, settings: CompressSettings
) -> tuple[dict[str, Any] | None, str | None]:  # fmt: skip
    """ORT latency of the float base, float pruned and QDQ models; the QDQ model's test accuracy
    in ORT and its top-1 agreement with the simulation. (None, a note) without onnxruntime."""
    from seernet.compression.ort_runtime import (
        float_onnx,
        has_onnxruntime,
        ort_latency_table,
        predictions,
        session,
        torch_predictions,
    )

    if not has_onnxruntime() or not qdq_path.is_file():
        return (
            None,
            "onnxruntime is not installed: ORT latency and agreement skipped (pip install 'seernet[onnx]')",
        )
    shape = ctx.space.input_shape
    variants = {
        "base (float)": float_onnx(ctx.model, shape),
        "compressed (float)": float_onnx(deployable(model, quantized=False), shape),
        f"compressed (QDQ, {settings.qdq_residuals} residuals)": qdq_path,
    }
    latency = ort_latency_table(
        variants, shape, (1, 64), settings.latency_runs, settings.ort_threads
    )
    if not ctx.splits.task.is_classification:  # agreement compares class predictions
        return {"latency": latency, "qdq_residuals": settings.qdq_residuals}, (
            "a custom metric or loss: the QDQ model's ORT accuracy and top-1 agreement are not measured"
        )
    ort_pred, labels = predictions(session(qdq_path, settings.ort_threads), ctx.splits.test)
    sim_pred = torch_predictions(model, ctx.splits.test, ctx.device)
    return {
        "latency": latency, "qdq_residuals": settings.qdq_residuals, "test_images": int(len(labels)),
        "test_accuracy": 100.0 * float((ort_pred == labels).mean()),
        "simulation_test_accuracy": 100.0 * float((sim_pred == labels).mean()),
        "top1_agreement": 100.0 * float((ort_pred == sim_pred).mean()),
    }, None  # fmt: skip


def measure_variants(ctx: RunContext, model: nn.Module, runs: int) -> dict[str, Any]:
    """CPU latency of the base model and the compressed one (float and fake-quant) at batch 1 and 64."""
    variants = {
        "base (float)": ctx.model,
        "compressed (float)": deployable(model, quantized=False),
        "compressed (fake-quant)": deployable(model),
    }
    return latency_table(variants, ctx.space.input_shape, (1, 64), runs)
