"""LAP's dynamic filter selection as an importance criterion: ``--criterion dynamic``.

LAP tells important filters apart by how they change during training rather than by
their static size. The exact rule implemented here (our reading of that idea):

1. Fine-tune a copy of the base model for ``steps`` SGD steps on the train split
   (seeded batches with augmentation, momentum 0.9, cosine learning rate from ``lr``, and
   *no weight decay*, so that decay-driven shrinking does not pass for learning).
2. For every Conv2d/Linear layer and output filter ``c``, with weights ``W0`` before and
   ``W1`` after: magnitude ``m_c = mean |W1[c]|`` and dynamics ``d_c = mean |W1[c] - W0[c]|``;
   the filter's score is ``s_c = m_c / mean(m) + d_c / mean(d)`` (each term divided by its
   layer mean, so both weigh equally and layers of different scale compare; the dynamics
   term is 0 for a layer that did not move).
3. A channel group's score of channel ``r`` is the mean of ``s`` over the group's
   conv/linear layers whose outputs are coupled to ``r`` (Torch-Pruning's group).

The lowest-scoring channels are pruned first: filters that are small *and* barely moved
by the gradient. Scores are stored in ``WORKDIR/dynamic_scores.pt`` (``torch.save`` of
tensors and strings, read with ``weights_only=True``) by ``seernet dynamic-scores``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from seernet.compression.prune import Criterion
from seernet.errors import UserError
from seernet.workspace.artifacts import SCORES_NAME
from seernet.workspace.folder import Workspace

CRITERION = "dynamic"


@dataclass(frozen=True)
class DynamicSettings:
    """The short fine-tune whose weight changes rank the filters."""

    steps: int = 50
    batch_size: int = 64
    lr: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("dynamic scores need steps >= 1, batch size >= 1 and lr > 0")


def filter_scores(before: nn.Module, after: nn.Module) -> dict[str, torch.Tensor]:
    """Rule step 2: score per output filter of every conv/linear module, by module name."""
    old = dict(before.named_modules())
    scores = {}
    for name, m in after.named_modules():
        if not isinstance(m, nn.Conv2d | nn.Linear):
            continue
        w1 = m.weight.detach().double().flatten(1)
        w0 = old[name].weight.detach().double().flatten(1)
        mag, dyn = w1.abs().mean(1), (w1 - w0).abs().mean(1)
        s = mag / mag.mean().clamp_min(1e-30)
        scores[name] = s + (dyn / dyn.mean() if dyn.mean() > 0 else torch.zeros_like(dyn))
    return scores


def group_scores(
    model: nn.Module, input_shape: tuple[int, ...], filters: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rule step 3: per channel group (policy name), the mean filter score of each root channel."""
    from seernet.space.graph import named_groups

    names = {m: n for n, m in model.named_modules()}
    dg, groups = named_groups(model, input_shape)
    out = {}
    for root_name, group in groups:
        total = torch.zeros(len(group[0].idxs), dtype=torch.float64)
        count = torch.zeros_like(total)
        for item in group:
            module, handler = item.dep.target.module, item.dep.handler
            if not (
                isinstance(module, nn.Conv2d | nn.Linear) and dg.is_out_channel_pruning_fn(handler)
            ):
                continue
            root_idx = torch.as_tensor([int(r) for r in item.root_idxs])
            total.index_add_(
                0, root_idx, filters[names[module]][torch.as_tensor([int(i) for i in item.idxs])]
            )
            count.index_add_(0, root_idx, torch.ones(len(root_idx), dtype=torch.float64))
        out[root_name] = total / count.clamp_min(1)
    return out


def compute_scores(ctx, settings: DynamicSettings, bar=None) -> dict[str, torch.Tensor]:
    """Fine-tune a copy of the workspace's base model and score every group's channels."""
    from seernet.data.loaders import batches
    from seernet.data.train import cosine_schedule, sgd, train_steps

    base = copy.deepcopy(ctx.model).to(ctx.device)
    tuned = copy.deepcopy(base)
    torch.manual_seed(settings.seed)
    data = batches(
        ctx.splits.train,
        settings.batch_size,
        shuffle=True,
        seed=settings.seed,
        train_augment=ctx.splits.augment,
    )
    opt = sgd(tuned, settings.lr, weight_decay=0.0)
    train_steps(
        tuned,
        data,
        ctx.device,
        opt,
        cosine_schedule(opt, settings.steps),
        settings.steps,
        bar,
        loss_fn=ctx.splits.task.criterion,
    )
    tuned.eval()
    filters = filter_scores(base.cpu(), tuned.cpu())
    return group_scores(tuned, ctx.space.input_shape, filters)


def save_scores(ws: Workspace, scores: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
    """Write the scores atomically; ``meta`` says which model and weights they belong to."""
    path = ws.path(SCORES_NAME)
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"meta": meta, "groups": {k: v.double() for k, v in scores.items()}}, tmp)
    tmp.replace(path)
    return path


def scores_meta(ctx, settings: DynamicSettings) -> dict[str, str]:
    """Identity of a score file: model, weights, space, and how it was computed."""
    return {"model": ctx.config.model, "weights": str(ctx.config.weights), "space": ctx.space.fingerprint,
            "settings": str(asdict(settings))}  # fmt: skip


def make(ws: Workspace) -> Criterion:
    """The ``dynamic`` criterion of ``ws`` (its own scores), or a UserError saying how to make them."""
    path = ws.path(SCORES_NAME)
    todo = f"run 'seernet dynamic-scores --workdir {ws.root}' first"
    if not path.is_file():
        raise UserError(f"no dynamic filter scores in {ws.root}: {todo}")
    try:
        blob = torch.load(path, weights_only=True)
        groups, meta = blob["groups"], blob["meta"]
    except (RuntimeError, KeyError, TypeError, OSError, EOFError) as exc:
        raise UserError(f"{path} is not readable ({exc}): {todo}") from exc
    config = ws.read() if ws.exists() else None
    if config is None or (meta.get("model"), meta.get("weights")) != (
        config.model,
        str(config.weights),
    ):
        raise UserError(f"{path} was computed for other base weights: {todo}")

    def criterion(group, name: str) -> torch.Tensor:
        if name not in groups or len(groups[name]) != len(group[0].idxs):
            raise UserError(
                f"{path} has no scores for channel group {name!r} of this model: {todo}"
            )
        return groups[name]

    return criterion
