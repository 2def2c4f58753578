"""``seernet.Compressor``: your model, data, metric and loss in; policies and compressed models out.

    import seernet

    job = seernet.Compressor(model, train=train_set, val=val_set, workdir="my-run")
    job.collect(samples=60)          # measured policies -> my-run/samples.h5 (resumes)
    job.fit()                        # the accuracy predictor -> my-run/predictor.pt
    [policy] = job.solve(flops="50%", bits="mixed")  # a PolicyDocument: policy.predicted.mean
    result = job.compress(policy)    # result.model, result.metrics, result.folder

Everything persists in the workspace folder, so a new ``Compressor`` on the same folder and
objects resumes. A model, data, metric or loss given as an object is recorded by name only;
given as a plug-in (``"net.py:build"``), the CLI and parallel workers can rebuild it too.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from seernet.api import workflow
from seernet.data.task import Loss, Metric, Task
from seernet.errors import UserError
from seernet.plugins import PYTHON_OBJECT, is_plugin, normalized, object_name
from seernet.space.policy import SpaceChoices
from seernet.space.policy_document import PolicyDocument
from seernet.steps.context import RunContext, record_space
from seernet.workspace.folder import Workspace

Data = Dataset | DataLoader


@dataclass
class Compressed:
    """One compressed model: the module (fine-tuned, fake-quantized), its metrics and exports."""

    model: nn.Module
    metrics: dict[str, Any]
    folder: Path


class Compressor:
    """A compression run on your own model and data (see the module docstring).

    ``model``: the trained ``nn.Module`` (weights included), or a plug-in spec
    ``"FILE.py:CALLABLE"`` / ``"package.module:CALLABLE"`` returning it. ``train`` / ``val``
    (/ ``test``): Datasets or DataLoaders of ``(input, target)``, used as given; or
    ``data="FILE.py:CALLABLE"`` returning ``{"train": ..., "val": ...[, "test": ...]}``.
    ``metric(model, batches) -> float`` (higher is better; default top-1 %) and
    ``loss(outputs, targets)`` (default cross-entropy), or their plug-in specs.
    ``example_input``: one batch (only its shape is used); default: the first val input.
    ``choices``: the policy space (pruning ratios, bit-widths, channel multiple), fixed on first use.
    """

    def __init__(
        self, model: nn.Module | str, train: Data | None = None, val: Data | None = None, test: Data | None = None,
        *, data: str | None = None, metric: Metric | str | None = None, loss: Loss | str | None = None,
        example_input: torch.Tensor | None = None, workdir: str | Path = "seernet-run", device: str = "auto",
        choices: SpaceChoices | None = None,
    ) -> None:  # fmt: skip
        if (data is None) == (train is None or val is None):
            raise UserError("give train= and val= datasets, or data='FILE.py:CALLABLE' (not both)")
        self._model, self._data, self._metric, self._loss = model, (train, val, test), metric, loss
        self._data_spec = _spec(data) if data is not None else None
        self._example = example_input
        self._workdir, self._device, self._choices = (
            Path(workdir),
            device,
            choices or SpaceChoices(),
        )

    @cached_property
    def context(self) -> RunContext:
        """The open run: workspace, model, data, space (created on first use)."""
        from seernet.data.datasets import load_dataset, user_splits
        from seernet.device import resolve_device

        ws = Workspace(self._workdir)
        requested = {"model": _name(self._model), "dataset": self._data_spec or "datasets" + PYTHON_OBJECT,
                     "metric": _name(self._metric), "loss": _name(self._loss)}  # fmt: skip
        if isinstance(self._model, nn.Module):
            requested["weights"] = _check_weights(ws, self._model)
        config = ws.open(requested)
        ctx = RunContext(ws, config, resolve_device(self._device))
        splits = (
            load_dataset(self._data_spec)
            if self._data_spec
            else user_splits(*self._data, name=config.dataset)
        )
        task = Task(_callable(self._metric), _callable(self._loss))
        ctx.__dict__["splits"] = _with_shape(_with_task(splits, task), self._example)
        if isinstance(self._model, nn.Module):
            ctx.__dict__["model"] = copy.deepcopy(self._model).to(ctx.device).eval()
        if not config.space:
            record_space(ctx, self._choices, arch=ctx.model)
        elif isinstance(self._model, nn.Module):
            _check_space(ctx, self._choices)
        return ctx

    def evaluate(self) -> float:
        """The metric of the uncompressed model on the val split."""
        ctx = self.context
        return ctx.splits.task.score(ctx.model, ctx.splits.val, ctx.device)

    def collect(self, samples: int = 60, protocol=None, sampler=None) -> dict[str, Any]:
        """Measure policies until the store holds ``samples``; min/mean/max of each column.

        ``protocol``: ``seernet.compression.protocol.Protocol`` (how one policy is measured);
        ``sampler``: ``search.sampler.SamplerConfig`` (which policies)."""
        return workflow.collect_samples(self.context, samples, protocol, sampler)

    def fit(self, folds: int = 5, seed: int = 0) -> workflow.Fitted:
        """Fit (and cross-validate) the accuracy predictor on the store."""
        return workflow.fit_predictor(self.context, folds, seed)

    def solve(
        self, *, flops=None, bitops=None, params=None, size=None, latency=None, bits: str | int = "mixed",
        pareto: int | None = None, refine: int | None = None, seed: int = 0,
        channel_multiple: int | None = None,
    ) -> list[PolicyDocument]:  # fmt: skip
        """One policy per budget (``flops="50%"``, ``size=["1MB", "2MB"]``, ...): the fast solve's
        prediction (``.predicted.mean``, ``.predicted.std``), or with ``refine=N`` a measured
        answer (``.measured.val_accuracy``). Each document is also a file (``.path``).
        ``channel_multiple`` N: pruned groups keep multiples of N (of the collected levels)."""
        budgets = workflow.parse_budgets(
            flops=flops, bitops=bitops, params=params, size=size, latency=latency
        )
        return workflow.solve_policies(
            self.context, budgets, workflow.parse_bits(bits), pareto, refine, seed, channel_multiple
        )

    def compress(
        self, policy: PolicyDocument | dict[str, Any] | str | Path, settings=None
    ) -> Compressed:
        """Prune, quantize, fine-tune and export ``policy`` (a document ``solve`` returned, its
        JSON object or its file; ``settings``: ``CompressSettings``)."""
        model, metrics = workflow.compress_policy(self.context, policy, settings)
        return Compressed(model, metrics, Path(metrics["folder"]))


def _spec(value: str) -> str:
    if not is_plugin(value):
        raise UserError(
            f"{value!r}: a plug-in is written FILE.py:CALLABLE or package.module:CALLABLE"
        )
    return normalized(value)


def _name(value: object) -> str | None:
    """What the workspace records for an API argument."""
    if value is None:
        return None
    return _spec(value) if isinstance(value, str) else object_name(value)


def _callable(value: Callable | str | None) -> Callable | None:
    from seernet.plugins import load_callable

    return load_callable(_spec(value)) if isinstance(value, str) else value


def _with_task(splits, task: Task):  # DataSplits -> DataSplits
    from dataclasses import replace

    return replace(splits, task=task)


def _with_shape(splits, example: torch.Tensor | None):  # DataSplits -> DataSplits
    from dataclasses import replace

    if example is None:
        return splits
    shape = tuple(example.shape[1:])
    if len(shape) != 3:
        raise UserError(
            f"example_input must be one (1, C, H, W) batch, got shape {tuple(example.shape)}"
        )
    if shape != splits.shape:
        raise UserError(f"example_input has inputs of shape {shape}, the val data {splits.shape}")
    return replace(splits, shape=shape)


def _check_weights(ws: Workspace, model: nn.Module) -> str:
    """A digest of ``model``'s weights; a workspace measured with other weights is refused."""
    digest = hashlib.sha1()
    for name, t in model.state_dict().items():
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    tag = f"sha1 {digest.hexdigest()[:16]}{PYTHON_OBJECT}"
    old = ws.read().weights if ws.exists() else None
    if old not in (None, tag):
        raise UserError(
            f"{ws.root} was measured with other weights of this model ({old}, now {tag}): use another workdir"
        )
    return tag


def _check_space(ctx: RunContext, choices: SpaceChoices) -> None:
    """A workspace made for another architecture or space is refused (the store would lie)."""
    from seernet.space.graph import build_space

    s = ctx.config.space
    space = build_space(copy.deepcopy(ctx.model).cpu().eval(), tuple(s["input_shape"]), choices)
    if space.fingerprint != s.get("fingerprint"):
        raise UserError(
            f"{ctx.ws.root} was made for another model or policy space (fingerprint {s.get('fingerprint')}, "
            f"this one {space.fingerprint}): use another workdir"
        )
    ctx.__dict__["space"] = space
