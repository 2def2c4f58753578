"""PriorModel: accuracy from per-coordinate damage tables, corrected by samples.

A policy is a point x in [0, 1]^D. Each coordinate d comes with a damage table: the
loss increase measured when that coordinate alone is lowered to each of its levels
(``seernet.compression.sensitivity``). The model reads the table as a monotone,
piecewise-linear function t_d and predicts

    mean(x) = floor + (top - floor) * exp(-(sum_d a_d t_d(x_d))^p) + r(x)

- ``top`` is the measured accuracy of the all-ones policy (nothing lowered), else max(y).
- p in [1, 3] is learned: short fine-tuning recovers small damages almost fully, large
  ones not, so accuracy stays flat near the base policy longer than exp(-L) allows.
- a_d = exp(log_a + v_k(d) + u_d): every table is a loss increase, so one common scale
  a is the prior; per-kind (pruning, weight bits, activation bits) deviations v_k and
  per-coordinate ones u_d are pulled to 0 by a ridge penalty, so with few samples the
  model ranks as the tables do and samples correct it. Every a_d > 0 keeps it monotone.
- r (off by default: ``residual_members=0``) is a small ensemble of monotone MLPs
  (``StackedMLP``, +1 in every input) fitted to what the prior leaves, for interactions,
  taken relative to its value at the all-ones corner: r <= 0, so it only adds damage and
  the base policy stays at ``top`` (an increasing net is largest at that corner;
  unanchored it lifted every policy near the base above what was measured). Its members'
  disagreement joins the spread. Off by default because on the 48-sample ResNet-20 store
  it did not help (5-fold CV RMSE 5.65 with, 5.63 without) and it costs most of the fit.

Why: an MLP fitted on tens of samples is confident far from them, and a solver walks
exactly there. The damage tables know every coordinate's effect from the start.

The spread grows away from measured data:

    std(x)^2 = ens_std(x)^2 + sigma0^2 + (sigma1 * drop(x))^2 + (kappa * g(x))^2

where drop(x) = top - prior(x) is the prior's predicted accuracy loss (errors grow with
it: a policy near the base model is easier to predict than one that lost 30 points) and
g(x) is the soft-min over training rows of the damage-weighted L1 distance
(top - floor) * sum_d a_d |t_d(x_d) - t_d(x_id)|, in accuracy points. sigma0, sigma1 and kappa
maximize the Gaussian likelihood of cross-fitted residuals (each row predicted by a
model fitted without it, its distance taken to the rows that model saw), so the growth
rate is what held-out rows showed, not a chosen constant.

Assumptions, stated: damages of different coordinates add up in the exponent (first
order; r corrects); the best policy is the all-ones corner (larger codes keep more);
no prediction exceeds ``cap`` (the base policy's accuracy plus a noise margin).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import least_squares, minimize
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from predictor.device import torch_threads
from predictor.stacked_mlp import StackedMLP
from predictor.training import TrainConfig, member_splits, train_members

FORMAT = "seernet.predictor.prior-model"
VERSION = 1
MAX_POWER = 3.0  # the link's exponent: 1 = exponential decay, larger = flat near the base
_SOFTMIN_TEMP = 0.05  # of the distance scale: soft-min ~ min, yet differentiable
_RESIDUAL_TRAIN = TrainConfig(
    lr=0.01, weight_decay=1e-3, input_penalty=0.05, max_epochs=400, patience=40,
    batch_size=None, huber_delta=1.0,
)  # fmt: skip


class DamageCurves(torch.nn.Module):
    """t_d(x_d) for every coordinate: piecewise-linear through (levels, damage), clamped at the ends."""

    def __init__(
        self, levels: Sequence[Sequence[float]], damage: Sequence[Sequence[float]]
    ) -> None:
        super().__init__()
        if len(levels) != len(damage):
            raise ValueError(f"{len(levels)} level lists but {len(damage)} damage lists")
        k = max(len(v) for v in levels) - 1
        lo = torch.zeros(len(levels), max(k, 1), dtype=torch.float64)
        width, step = torch.ones_like(lo), torch.zeros_like(lo)
        first = torch.zeros(len(levels), dtype=torch.float64)
        for d, (lv, dv) in enumerate(zip(levels, damage, strict=True)):
            lv, dv = np.asarray(lv, dtype=np.float64), np.asarray(dv, dtype=np.float64)
            if lv.shape != dv.shape or lv.size < 1 or np.any(np.diff(lv) <= 0):
                raise ValueError(f"coordinate {d}: levels must ascend and match the damages")
            if np.any(dv < 0) or np.any(np.diff(dv) > 1e-12):
                raise ValueError(f"coordinate {d}: damage must be >= 0 and not rise with the level")
            n = lv.size - 1
            first[d] = dv[0]
            lo[d, :n] = torch.from_numpy(lv[:-1])
            width[d, :n] = torch.from_numpy(np.diff(lv))
            step[d, :n] = torch.from_numpy(np.diff(dv))
        self.register_buffer("lo", lo)
        self.register_buffer("width", width)
        self.register_buffer("step", step)
        self.register_buffer("first", first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) codes -> (N, D) damages, in x's dtype."""
        frac = ((x[..., None] - self.lo.to(x)) / self.width.to(x)).clamp(0.0, 1.0)
        # clamp: the sum of steps can land a rounding error below 0 at the top level
        return (self.first.to(x) + (frac * self.step.to(x)).sum(-1)).clamp_min(0.0)


class PriorModel(RegressorMixin, BaseEstimator):
    """Damage-table prior x learned scales + monotone residual ensemble (see the module doc).

    ``levels``/``damage``: per coordinate, ascending codes and their loss increases.
    ``kinds``: per coordinate an integer kind (coordinates of a kind share a scale).
    ``cap``: no mean above it (None: max(y) + the residual noise).
    """

    def __init__(
        self,
        levels: Sequence[Sequence[float]],
        damage: Sequence[Sequence[float]],
        kinds: Sequence[int],
        cap: float | None = None,
        ridge: float = 4.0,
        residual_members: int = 0,
        hidden: tuple[int, ...] = (32,),
        calibration_folds: int = 3,
        random_state: int = 0,
    ) -> None:
        self.levels, self.damage, self.kinds = levels, damage, kinds
        self.cap, self.ridge = cap, ridge
        self.residual_members, self.hidden = residual_members, hidden
        self.calibration_folds, self.random_state = calibration_folds, random_state

    # --- fitting ---------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> PriorModel:
        X, y = check_X_y(X, y, dtype=np.float64, y_numeric=True)
        self._setup(X.shape[1])
        with torch_threads(1):
            self._fit_core(X, y)
            self._fit_spread(X, y)
        return self

    def _setup(self, dim: int) -> None:
        kinds = np.asarray(self.kinds, dtype=np.int64)
        if kinds.shape != (dim,) or len(self.levels) != dim:
            raise ValueError(f"tables and kinds must have one entry per input ({dim})")
        self.curves_ = DamageCurves(self.levels, self.damage)
        self.kind_index_ = np.unique(kinds, return_inverse=True)[1]
        self.n_features_in_ = dim

    def _fit_core(self, X: np.ndarray, y: np.ndarray) -> None:
        """Prior parameters by robust least squares, then the residual ensemble.

        a_d = exp(log_a + v_k(d) + u_d): every table is a loss increase, so one common
        scale is the prior; kind (v) and coordinate (u) deviations are ridge-penalized."""
        self.top_ = _top(X, y)
        T = self._damages(X)
        n_kinds, dim = int(self.kind_index_.max()) + 1, T.shape[1]
        hi_floor = max(float(y.min()) - 1.0, 0.0)

        def unpack(p):
            log_a, v, u = p[0], p[1 : 1 + n_kinds], p[1 + n_kinds : 1 + n_kinds + dim]
            return log_a, v, u, p[-2], min(max(p[-1], 0.0), hi_floor)

        def residuals(p):
            log_a, v, u, power, floor = unpack(p)
            a = np.exp(log_a + v[self.kind_index_] + u)
            pred = floor + (self.top_ - floor) * np.exp(-((T @ a) ** power))
            return np.concatenate([pred - y, np.sqrt(self.ridge) * v, np.sqrt(self.ridge) * u])

        p0 = np.concatenate([[0.0], np.zeros(n_kinds + dim), [1.0, 0.5 * hi_floor]])
        lb = np.concatenate([[-12.0], np.full(n_kinds + dim, -4.0), [1.0, 0.0]])
        ub = np.concatenate([[6.0], np.full(n_kinds + dim, 4.0), [MAX_POWER, hi_floor + 1e-9]])
        fit = least_squares(residuals, p0, bounds=(lb, ub), loss="soft_l1", f_scale=1.0)
        log_a, v, u, self.power_, self.floor_ = unpack(fit.x)
        self.scale_ = np.exp(log_a + v[self.kind_index_] + u)
        self.members_ = self._fit_residual(X, y - self._prior_np(X))
        self.cap_ = self.cap if self.cap is not None else float(y.max()) + 1.0
        self.X_train_ = X.copy()

    def _fit_residual(self, X: np.ndarray, r: np.ndarray) -> StackedMLP | None:
        if self.residual_members <= 0 or len(r) < 8:
            self.r_scale_ = 1.0
            return None
        self.r_scale_ = float(max(r.std(), 0.1))
        gen = torch.Generator().manual_seed(self.random_state)
        net = StackedMLP(self.residual_members, X.shape[1], self.hidden, generator=gen,
                         signs=torch.ones(X.shape[1])).double()  # fmt: skip
        splits = member_splits(len(r), self.residual_members, 0.2, True, gen)
        xt, rt = torch.from_numpy(X), torch.from_numpy(r / self.r_scale_)
        train_members(net, xt, rt, splits, _RESIDUAL_TRAIN, gen)
        return net.eval().requires_grad_(False)

    def _fit_spread(self, X: np.ndarray, y: np.ndarray) -> None:
        """sigma0, sigma1 and kappa from cross-fitted residuals (see the module doc)."""
        k = min(self.calibration_folds, len(y) // 4)
        self.sigma0_, self.sigma1_, self.kappa_ = 1.0, 0.0, 0.0
        self.calibration_coverage_ = None
        if k < 2:
            return
        err, ens, drop, dist = _cross_fit(self, X, y, k)

        def variance(p):
            s0, s1, kap = np.exp(p)
            return ens**2 + s0**2 + (s1 * drop) ** 2 + (kap * dist) ** 2

        def nll(p):
            v = variance(p)
            return float(np.sum(np.log(v) + err**2 / v))

        best = minimize(nll, np.array([0.0, -2.0, -1.0]), method="Nelder-Mead")
        self.sigma0_, self.sigma1_, self.kappa_ = (float(v) for v in np.exp(best.x))
        sd = np.sqrt(variance(best.x))
        z = np.abs(err) / sd
        self.calibration_coverage_ = (float(np.mean(z <= 1)), float(np.mean(z <= 2)))

    # --- prediction ------------------------------------------------------------------
    def _damages(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.curves_(torch.from_numpy(np.asarray(X, dtype=np.float64))).numpy()

    def _prior_np(self, X: np.ndarray) -> np.ndarray:
        loss = self._damages(X) @ self.scale_
        return self.floor_ + (self.top_ - self.floor_) * np.exp(-(loss**self.power_))

    def mean_std_torch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable (mean, std), each (N,), in x's dtype: what the solver maximizes."""
        check_is_fitted(self, "scale_")
        t = self.curves_(x)
        a = torch.as_tensor(self.scale_).to(x)
        loss = (t @ a).clamp_min(0.0) ** self.power_
        mean = self.floor_ + (self.top_ - self.floor_) * torch.exp(-loss)
        drop = (self.top_ - self.floor_) * -torch.expm1(-loss)  # the prior's predicted loss
        var = self.sigma0_**2 + (self.sigma1_ * drop) ** 2
        if self.members_ is not None:
            out = self._residual(x)
            mean = mean + out.mean(0)
            var = var + out.var(0, unbiased=True)
        if self.kappa_ > 0:
            var = var + (self.kappa_ * self._distance(t, a)) ** 2
        return torch.clamp(mean, max=self.cap_), var.sqrt()

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N) member outputs less their value at the all-ones corner: never above 0."""
        ones = torch.ones(1, x.shape[1], dtype=x.dtype)
        return (self.members_(x) - self.members_(ones)) * self.r_scale_

    def _distance(self, t: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Soft-min damage-weighted L1 distance (accuracy points) to the training rows."""
        ref = self.curves_(torch.from_numpy(self.X_train_).to(t))
        d = (torch.cdist(t * a, ref * a, p=1.0)) * (self.top_ - self.floor_)
        temp = _SOFTMIN_TEMP * float(max(self.top_ - self.floor_, 1.0))
        return -temp * torch.logsumexp(-d / temp, dim=1)

    def predict(self, X: np.ndarray, return_std: bool = False):
        X = check_array(X, dtype=np.float64)
        with torch.no_grad(), torch_threads(1):
            mean, std = self.mean_std_torch(torch.from_numpy(X))
        return (mean.numpy(), std.numpy()) if return_std else mean.numpy()

    # --- persistence -----------------------------------------------------------------
    def save(self, path: str | Path, metadata: dict) -> None:
        """Tensors plus a JSON header (no pickle); ``load`` rebuilds the fitted model."""
        fitted = {k: _plain(getattr(self, k)) for k in _FITTED_SCALARS}
        header = {"format": FORMAT, "version": VERSION, "params": _plain(self.get_params()),
                  "fitted": fitted, "metadata": metadata}  # fmt: skip
        blob = {
            "header": json.dumps(header),
            "scale": torch.from_numpy(self.scale_),
            "X_train": torch.from_numpy(self.X_train_),
            "state": {} if self.members_ is None else self.members_.state_dict(),
        }
        torch.save(blob, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> tuple[PriorModel, dict]:
        try:
            blob = torch.load(Path(path), map_location="cpu", weights_only=True)
            header = json.loads(blob["header"])
        except FileNotFoundError:
            raise
        except Exception as err:  # torch raises many types on corrupt input
            raise ValueError(f"{path} is not a readable predictor file ({err}); refit it") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(f"{path} is not a seernet prior-model predictor; refit it")
        if header.get("version") != VERSION:
            raise ValueError(
                f"{path} has prior-model version {header.get('version')}, this seernet reads {VERSION}; refit it"
            )
        params = {**header["params"], "hidden": tuple(header["params"]["hidden"])}
        model = cls(**params)
        model._setup(len(params["kinds"]))
        for k, v in header["fitted"].items():
            setattr(model, k, tuple(v) if isinstance(v, list) else v)
        model.scale_ = blob["scale"].numpy()
        model.X_train_ = blob["X_train"].numpy()
        model.members_ = None
        if blob["state"]:
            net = StackedMLP(model.residual_members, model.n_features_in_, model.hidden,
                             signs=torch.ones(model.n_features_in_)).double()  # fmt: skip
            net.load_state_dict(blob["state"])
            model.members_ = net.eval().requires_grad_(False)
        return model, header["metadata"]


_FITTED_SCALARS = (
    "top_",
    "floor_",
    "power_",
    "cap_",
    "r_scale_",
    "sigma0_",
    "sigma1_",
    "kappa_",
    "calibration_coverage_",
)


def _plain(v):
    """JSON-ready copy of params and fitted scalars (numpy -> lists and floats)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple | np.ndarray):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _top(X: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the all-ones corner: its best measurement, else the best of y."""
    corner = np.all(X >= 1.0 - 1e-9, axis=1)
    return float(y[corner].max()) if corner.any() else float(y.max())


def _cross_fit(model: PriorModel, X: np.ndarray, y: np.ndarray, k: int):
    """Out-of-fold (error, ensemble std, distance to that fold's training rows) per row."""
    rng = np.random.default_rng(model.random_state)
    fold = rng.permutation(len(y)) % k
    err, ens, drop, dist = (np.zeros(len(y)) for _ in range(4))
    for f in range(k):
        tr, te = fold != f, fold == f
        sub = PriorModel(**{**model.get_params(), "calibration_folds": 0, "cap": model.cap})
        sub._setup(X.shape[1])
        sub._fit_core(X[tr], y[tr])
        sub.sigma0_, sub.sigma1_, sub.kappa_ = 0.0, 0.0, 0.0
        with torch.no_grad():
            xt = torch.from_numpy(X[te])
            mean, std = sub.mean_std_torch(xt)
            t = sub.curves_(xt)
            dist[te] = sub._distance(t, torch.as_tensor(sub.scale_).to(t)).numpy()
        err[te], ens[te], drop[te] = (
            y[te] - mean.numpy(),
            std.numpy(),
            sub.top_ - sub._prior_np(X[te]),
        )
    return err, ens, drop, dist
