"""Training loop for a StackedMLP: per-member data splits, AdamW, per-member early stopping."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from predictor.stacked_mlp import StackedMLP


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by all members."""

    lr: float
    weight_decay: float
    input_penalty: float
    max_epochs: int
    patience: int
    batch_size: int | None
    huber_delta: float | None = None


def member_splits(
    n: int, n_members: int, val_fraction: float, bootstrap: bool, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw each member's (train, val) row indices: (M, n_train) and (M, n_val).

    Every member holds out a different random subset for early stopping, and with
    ``bootstrap`` resamples its training rows with replacement; both make the members
    disagree where the data are thin, which is the uncertainty we want to read.
    """
    n_val = 0 if val_fraction <= 0 else min(max(round(val_fraction * n), 1), n - 1)
    perms = torch.stack([torch.randperm(n, generator=generator) for _ in range(n_members)])
    val_idx, pool = perms[:, :n_val], perms[:, n_val:]
    if bootstrap:
        pick = torch.randint(0, pool.shape[1], pool.shape, generator=generator)
        pool = torch.gather(pool, 1, pick)
    return pool, val_idx


class _BestWeights:
    """Per-member early stopping: remembers each member's weights at its best val loss."""

    def __init__(self, net: StackedMLP, patience: int) -> None:
        m = net.n_members
        self.patience = patience
        self.best = [p.detach().clone() for p in net.parameters()]
        self.best_loss = torch.full((m,), float("inf"), device=self.best[0].device)
        self.waited = torch.zeros(m, dtype=torch.long, device=self.best[0].device)

    @torch.no_grad()
    def update(self, net: StackedMLP, val_loss: torch.Tensor) -> bool:
        """Record improvements; return True once every member has run out of patience."""
        improved = val_loss < self.best_loss
        self.best_loss = torch.where(improved, val_loss, self.best_loss)
        self.waited = torch.where(improved, torch.zeros_like(self.waited), self.waited + 1)
        for b, p in zip(self.best, net.parameters(), strict=True):
            b[improved] = p[improved]
        return bool((self.waited > self.patience).all())

    @torch.no_grad()
    def restore(self, net: StackedMLP) -> None:
        for b, p in zip(self.best, net.parameters(), strict=True):
            p.copy_(b)


def train_members(
    net: StackedMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    splits: tuple[torch.Tensor, torch.Tensor],
    cfg: TrainConfig,
    generator: torch.Generator,
) -> int:
    """Fit ``net`` in place on (train, val) index splits; return the number of epochs run.

    With validation rows, each member ends at its own best-validation weights.
    """
    train_idx, val_idx = splits
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_train = train_idx.shape[1]
    batch = n_train if cfg.batch_size is None else min(cfg.batch_size, n_train)
    stopper = _BestWeights(net, cfg.patience) if val_idx.shape[1] > 0 else None
    epochs_run = 0
    while epochs_run < cfg.max_epochs:
        epochs_run += 1
        order = _shuffle_rows(train_idx, generator) if batch < n_train else train_idx
        for start in range(0, n_train, batch):
            idx = order[:, start : start + batch]
            opt.zero_grad(set_to_none=True)
            # Sum, not mean, over members: each member then sees exactly its own gradient.
            _member_loss(net, x[idx], y[idx], cfg.input_penalty, cfg.huber_delta).sum().backward()
            opt.step()
        if stopper is not None:
            with torch.no_grad():
                val_loss = _member_loss(net, x[val_idx], y[val_idx], 0.0, cfg.huber_delta)
            if stopper.update(net, val_loss):
                break
    if stopper is not None:
        stopper.restore(net)
    return epochs_run


def _member_loss(
    net: StackedMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    input_penalty: float,
    huber_delta: float | None = None,
) -> torch.Tensor:
    """Per-member MSE (or Huber) on x (M, n, D), y (M, n), plus the group-lasso input penalty.

    Huber (twice the usual definition, so it equals the MSE below ``huber_delta``) lets a
    few outlying measurements pull the fit linearly rather than quadratically.
    """
    err = net(x) - y
    if huber_delta is None:
        loss = (err**2).mean(dim=1)
    else:
        loss = 2 * torch.nn.functional.huber_loss(
            err, torch.zeros_like(err), reduction="none", delta=huber_delta
        ).mean(dim=1)
    if input_penalty > 0:
        loss = loss + input_penalty * _input_group_norm(net)
    return loss


def _input_group_norm(net: StackedMLP) -> torch.Tensor:
    """Per member, the sum over inputs of the L2 norm of that input's first-layer weights.

    A group lasso: it drives the weights of whole inputs towards zero, which lets the
    network ignore the many policy dimensions that barely move the accuracy instead of
    fitting noise with them (this is what helps most on MobileNetV2's 154 dimensions).
    """
    return net.input_weights().norm(dim=2).sum(dim=1)


def _shuffle_rows(idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shuffle each member's index row independently."""
    keys = torch.rand(idx.shape, generator=generator)
    return torch.gather(idx, 1, keys.argsort(dim=1))
