"""PriorModel: accuracy from per-coordinate damage tables, corrected by samples.

A policy is a point x in [0, 1]^D. Each coordinate d comes with a damage table: the
damage (KL divergence from the base model's outputs, or loss increase) measured when
that coordinate alone is lowered to each of its levels
(``seernet.compression.sensitivity``). The model reads the table as a monotone,
piecewise-linear function t_d and predicts

    mean(x) = floor + (top - floor) * exp(-(sum_d a_d t_d(x_d))^p) + r(x)

- ``top`` is the measured accuracy of the all-ones policy (nothing lowered), else max(y).
- p is 1 by default (``power``; None learns it in [1, 3]). A learned p was meant to keep
  accuracy flat near the base policy (short fine-tuning recovers small damages), but with
  every table level measured it ran to 2.3 on the 60-sample ResNet-20 store, whose samples
  leave the damage range of the solver's answers empty: its fast answers were predicted
  87-92% +/- 1-2 and measured 71-91 (z down to -9.1, 7 of 12 beyond 2 std). With p = 1
  that store predicts 152 policies measured outside it (bench anchors and solver answers
  above 70%) with bias -0.3 and 8 beyond 2 std, the 200-sample store (which learned
  p = 1.44) with bias +0.1 and 7 beyond 2 std.
- a_d = exp(log_a + v_k(d) + u_d): every table is the same kind of damage, so one common
  scale a is the prior; per-kind (pruning, weight bits, activation bits) deviations v_k and
  per-coordinate ones u_d have a Gaussian prior (std ``deviation_std``), so with few
  samples the model ranks as the tables do and samples correct it.
- ``exponents`` (one per kind; default all 1) reads a kind's tables as t_d(x_d) ** q_k, q_k
  fixed or learned (None) in [1, ``MAX_EXPONENT``]: q > 1 makes many small damages of that
  kind cost less than their sum (sub-additive). seernet keeps them at 1: a learned pruning
  exponent rated measured policies better but did not make the solver's answers better
  (``seernet.steps.sensitivity.prior_tables``).
- ``weighted``: fit the parameters a second time with each row's residual divided by its
  fitted noise std (below), so that the many low-accuracy samples, where the tables' additive
  form fits worst and the noise is largest, pull less on the scales that matter near the
  top. It rated held-out policies better (bench_prior_heldout: the 200-sample store's
  earlier fast answers RMSE 1.47 -> 0.86, anchors' bias -2.70 -> -2.01) but did not make the
  solver's answers better (fast-solve bench at the stores' seed: 200 samples 9 -> 7 of 12
  cells within 0.3 of the best anchor, worst -1.54 -> -2.78; 60 samples 7 -> 7, worst -1.04 ->
  -0.90), so seernet leaves it off (default False).
- ``code_weight`` w > 0: the GP below sees each policy's codes beside its damages, scaled to
  the damages' median pairwise distance times w, so a policy that cuts a coordinate whose table
  entries are tiny is still away from samples that kept it. w = 1 was a tie on the fast-solve
  bench (9 instead of 7 of 12 cells within 0.3 of the best anchor on the 60-sample store, 7
  instead of 9 on the 200-sample one), so seernet leaves it at 0.
- r (``residual="gp"``; "none" leaves it out) is a Gaussian process on what the prior
  leaves, over the damage space z_d = a_d t_d(x_d) (RBF kernel, amplitude and length
  fitted by marginal likelihood): it corrects the prior near measured policies and
  fades to 0 away from them. The prior part is monotone by construction (every a_d > 0);
  r is not constrained, so the mean is monotone only up to r. A monotone MLP residual
  (anchored at the all-ones corner) was tried first: on the 48-sample ResNet-20 store it
  did not help (5-fold CV RMSE 5.65 with, 5.63 without).

Why: an MLP fitted on tens of samples is confident far from them, and a solver walks
exactly there. The damage tables know every coordinate's effect from the start.

The spread grows with the predicted loss and away from measured data:

    std(x)^2 = var_theta(x) + n(x) * (white + var_r(x)),   n(x) = sigma0^2 + (sigma1 * drop(x))^2

(without the GP: var_theta(x) + n(x)). The GP sees the residuals divided by sqrt(n), so
``white`` (its fitted noise level) and var_r are in those standardized units.

- drop(x) = top - prior(x): errors grow with the predicted loss (a policy near the base
  model is easier to predict than one that lost 30 points); sigma0, sigma1 maximize the
  likelihood of the prior's residuals; n(x) scales the GP's per-row noise.
- var_theta: the prior's parameters' Laplace covariance (Gauss-Newton at the robust
  least-squares fit) pushed through the gradient of the mean: large where the answer
  leans on a coordinate's scale that the samples barely pinned down.
- var_r: the GP's posterior variance, which grows with the distance to the samples.

Assumptions, stated: damages of different coordinates add up in the exponent (first
order; r corrects near data); the best policy is the all-ones corner (larger codes keep
more); no prediction exceeds ``cap`` (the base policy's accuracy plus a noise margin).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import least_squares, minimize
from scipy.spatial.distance import pdist
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from predictor.device import torch_threads
from predictor.persistence import read_header

FORMAT = "seernet.predictor.prior-model"
# 2: GP residual, parameter covariance; 3: the link power fixed by default. Files of version
# 3 written before ``exponents`` existed load with every exponent 1 (what they were fitted with).
VERSION = 3
RESIDUALS = ("gp", "none")
MIN_LENGTH = 0.1  # the GP's shortest length scale, as a fraction of the median sample distance
MAX_POWER = 3.0  # the link's exponent: 1 = exponential decay, larger = flat near the base
MAX_EXPONENT = 3.0  # a kind's damage exponent: 1 = damages add up, larger = small ones count less


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
    """Damage-table prior x learned scales + GP residual (see the module doc).

    ``levels``/``damage``: per coordinate, ascending codes and their damages.
    ``kinds``: per coordinate an integer kind (coordinates of a kind share a deviation).
    ``cap``: no mean above it (None: max(y) + 1).
    ``power``: the link's exponent p (None: learned in [1, ``MAX_POWER``]).
    """

    def __init__(
        self,
        levels: Sequence[Sequence[float]],
        damage: Sequence[Sequence[float]],
        kinds: Sequence[int],
        cap: float | None = None,
        deviation_std: float = 0.5,
        residual: str = "gp",
        random_state: int = 0,
        power: float | None = 1.0,
        exponents: Sequence[float | None] | None = None,
        weighted: bool = False,
        code_weight: float = 0.0,
    ) -> None:
        self.levels, self.damage, self.kinds = levels, damage, kinds
        self.cap, self.deviation_std = cap, deviation_std
        self.residual, self.random_state = residual, random_state
        self.power, self.exponents = power, exponents
        self.weighted, self.code_weight = weighted, code_weight

    # --- fitting ---------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> PriorModel:
        X, y = check_X_y(X, y, dtype=np.float64, y_numeric=True)
        if self.power is not None and not 1.0 <= self.power <= MAX_POWER:
            raise ValueError(f"power must be None or in [1, {MAX_POWER}], got {self.power}")
        self._setup(X.shape[1])
        with torch_threads(1):
            self._fit_core(X, y)
            prior = self._prior_np(X)
            self._fit_noise(y - prior, self.top_ - prior)
            if self.weighted:  # refit with each row's residual in units of its own noise
                sd = np.sqrt(self.sigma0_**2 + (self.sigma1_ * (self.top_ - prior)) ** 2)
                self._fit_core(X, y, sd / np.median(sd))
                prior = self._prior_np(X)
                self._fit_noise(y - prior, self.top_ - prior)
            self._fit_gp(X, y - prior, self.top_ - prior)
        return self

    def _setup(self, dim: int) -> None:
        kinds = np.asarray(self.kinds, dtype=np.int64)
        if kinds.shape != (dim,) or len(self.levels) != dim:
            raise ValueError(f"tables and kinds must have one entry per input ({dim})")
        self.curves_ = DamageCurves(self.levels, self.damage)
        self.kind_index_ = np.unique(kinds, return_inverse=True)[1]
        self.n_kinds_ = int(self.kind_index_.max()) + 1
        exps = [1.0] * self.n_kinds_ if self.exponents is None else list(self.exponents)
        if len(exps) != self.n_kinds_ or any(
            e is not None and not 1.0 <= e <= MAX_EXPONENT for e in exps
        ):
            raise ValueError(
                f"exponents: one per kind ({self.n_kinds_}), each None or in [1, {MAX_EXPONENT}]"
            )
        self.exponent_ = np.array([1.0 if e is None else float(e) for e in exps])
        # the kinds whose exponent is fitted (read on every prediction's variance)
        self.learned_kinds_ = np.array([k for k, e in enumerate(exps) if e is None], dtype=np.int64)
        self.n_features_in_ = dim
        self._torch = {}  # per dtype: the fitted arrays as tensors (``_tensors``)

    def _fit_core(self, X: np.ndarray, y: np.ndarray, row_std: np.ndarray | None = None) -> None:
        """Prior parameters by robust least squares.

        a_d = exp(log_a + v_k(d) + u_d): every table is the same kind of damage, so one
        common scale is the prior; kind (v) and coordinate (u) deviations have a Gaussian prior
        of std ``deviation_std``. Their penalty is weighted by the residual scale (two
        passes), so the prior means the same with accuracies spread over 2 or 60 points.
        The parameters' Laplace covariance goes into the spread (``_param_var``); the
        parameter vector is (log_a, v, u, [exponents when learned], [power when learned],
        floor)."""
        self.top_ = _top(X, y)
        row_std = np.ones(len(y)) if row_std is None else row_std
        T0 = self._raw_damages(X)
        n_kinds, dim = self.n_kinds_, T0.shape[1]
        hi_floor = max(float(y.min()) - 1.0, 0.0)
        learn_power = self.power is None
        learned = self.learned_kinds_
        n_q = len(learned)
        first = 1 + n_kinds + dim

        def unpack(p):
            log_a, v, u = p[0], p[1 : 1 + n_kinds], p[1 + n_kinds : first]
            exps = self.exponent_.copy()
            exps[learned] = p[first : first + n_q]
            power = p[-2] if learn_power else self.power
            return log_a, v, u, exps, power, min(max(p[-1], 0.0), hi_floor)

        def residuals(p, weight):
            log_a, v, u, exps, power, floor = unpack(p)
            a = np.exp(log_a + v[self.kind_index_] + u)
            T = T0 ** exps[self.kind_index_]
            pred = floor + (self.top_ - floor) * np.exp(-((T @ a) ** power))
            return np.concatenate([(pred - y) / row_std, weight * v, weight * u])

        power0, plo, phi = ([1.0], [1.0], [MAX_POWER]) if learn_power else ([], [], [])
        q0, qlo, qhi = [1.0] * n_q, [1.0] * n_q, [MAX_EXPONENT] * n_q
        p0 = np.concatenate([[0.0], np.zeros(n_kinds + dim), q0, power0, [0.5 * hi_floor]])
        lb = np.concatenate([[-12.0], np.full(n_kinds + dim, -4.0), qlo, plo, [0.0]])
        ub = np.concatenate([[6.0], np.full(n_kinds + dim, 4.0), qhi, phi, [hi_floor + 1e-9]])
        scale = 1.0
        for _ in range(2):
            weight = scale / self.deviation_std
            fit = least_squares(
                residuals, p0, bounds=(lb, ub), loss="soft_l1", f_scale=1.0, args=(weight,)
            )
            p0 = fit.x
            # robust residual scale (MAD), floored: a perfect fit must not make the prior rigid
            scale = max(1.4826 * float(np.median(np.abs(fit.fun[: len(y)]))), 0.25)
        log_a, v, u, self.exponent_, self.power_, self.floor_ = unpack(fit.x)
        self.scale_ = np.exp(log_a + v[self.kind_index_] + u)
        self.param_cov_ = scale**2 * np.linalg.pinv(fit.jac.T @ fit.jac)
        self.cap_ = self.cap if self.cap is not None else float(y.max()) + 1.0

    def _fit_noise(self, r: np.ndarray, drop: np.ndarray) -> None:
        """sigma0, sigma1: the residuals' std as a function of the predicted loss (likelihood)."""

        def nll(p):
            v = np.exp(2 * p[0]) + np.exp(2 * p[1]) * drop**2 + 1e-12  # no log(0) on underflow
            return float(np.sum(np.log(v) + r**2 / v))

        best = minimize(nll, np.array([0.0, -2.0]), method="Nelder-Mead")
        self.sigma0_, self.sigma1_ = (max(float(v), 1e-3) for v in np.exp(best.x))

    def _fit_gp(self, X: np.ndarray, r: np.ndarray, drop: np.ndarray) -> None:
        """A GP on what the prior leaves, in damage space, with the fitted per-row noise."""
        self.Z_train_ = self.gp_amp_ = self.gp_length_ = self.gp_white_ = None
        self.gp_code_scale_ = 0.0
        if self.residual not in RESIDUALS:
            raise ValueError(f"residual must be one of {RESIDUALS}, got {self.residual!r}")
        if self.residual != "gp" or len(r) < 8:
            return
        Z = self._damages(X) * self.scale_  # damage space: each coordinate's a_d t_d(x_d)
        if self.code_weight > 0 and len(X) > 1:
            # the codes beside the damages, scaled to the same typical distance: two policies
            # with alike damages but unlike structure are not the same point
            self.gp_code_scale_ = (
                self.code_weight
                * max(float(np.median(pdist(Z))), 1e-3)
                / max(float(np.median(pdist(X))), 1e-3)
            )
        Z = self._gp_features(Z, X)
        rt = r / np.sqrt(self.sigma0_**2 + (self.sigma1_ * drop) ** 2)  # homoscedastic now
        # The length scale may not fall below a tenth of the typical distance between two
        # samples: below it the GP only interpolates the rows it saw (it chose 0.003 of it
        # on the 60-sample store) and says nothing about their neighbours.
        spread = max(float(np.median(pdist(Z))) if len(Z) > 1 else 1.0, 1e-3)
        rbf = RBF(spread, (MIN_LENGTH * spread, 10 * spread))
        kernel = ConstantKernel(0.5, (1e-3, 1e2)) * rbf + WhiteKernel(0.5, (1e-3, 1e1))
        gp = GaussianProcessRegressor(
            kernel, alpha=1e-8, normalize_y=False, random_state=self.random_state
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(Z, rt)
        self.gp_amp_ = float(gp.kernel_.k1.k1.constant_value)
        self.gp_length_ = float(gp.kernel_.k1.k2.length_scale)
        self.gp_white_ = float(gp.kernel_.k2.noise_level)
        self.Z_train_ = Z
        self.gp_kinv_ = np.linalg.inv(gp.kernel_(Z) + 1e-8 * np.eye(len(Z)))
        self.gp_alpha_ = self.gp_kinv_ @ rt

    def _gp_features(self, z, x):
        """The GP's input: the damage space, with the codes (scaled) beside it when
        ``code_weight`` > 0; numpy or torch alike."""
        if not self.gp_code_scale_:
            return z
        if isinstance(z, torch.Tensor):
            return torch.cat([z, self.gp_code_scale_ * x], dim=1)
        return np.concatenate([z, self.gp_code_scale_ * np.asarray(x, dtype=np.float64)], axis=1)

    # --- prediction ------------------------------------------------------------------
    def _raw_damages(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.curves_(torch.from_numpy(np.asarray(X, dtype=np.float64))).numpy()

    def _damages(self, X: np.ndarray) -> np.ndarray:
        """t_d(x_d) ** q_k(d): the tables read through each kind's exponent."""
        return self._raw_damages(X) ** self.exponent_[self.kind_index_]

    def _curves_torch(self, x: torch.Tensor, c: dict) -> torch.Tensor:
        t = self.curves_(x)
        return t if c["exponent"] is None else t ** c["exponent"]

    def _prior_np(self, X: np.ndarray) -> np.ndarray:
        loss = self._damages(X) @ self.scale_
        return self.floor_ + (self.top_ - self.floor_) * np.exp(-(loss**self.power_))

    def mean_std_torch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable (mean, std), each (N,), in x's dtype: what the solver maximizes."""
        check_is_fitted(self, "scale_")
        c = self._tensors(x.dtype)
        t = self._curves_torch(x, c)
        a = c["scale"]
        lsum = (t @ a).clamp_min(0.0)
        loss = lsum if self.power_ == 1.0 else lsum**self.power_
        mean = self.floor_ + (self.top_ - self.floor_) * torch.exp(-loss)
        drop = (self.top_ - self.floor_) * -torch.expm1(-loss)  # the prior's predicted loss
        noise = self.sigma0_**2 + (self.sigma1_ * drop) ** 2  # the residuals' variance at x
        var_theta = self._param_var(t, a, lsum, c)
        var = var_theta + noise
        if self.Z_train_ is not None:
            z = self._gp_features(t * a, x)
            ref = c["Z"]
            # squared distances as a matmul: the same values as cdist, a cheaper backward
            d2 = ((z * z).sum(1, keepdim=True) + c["Z2"] - 2.0 * z @ ref.T).clamp_min(0.0)
            k = self.gp_amp_ * torch.exp(-0.5 * d2 / self.gp_length_**2)
            mean = mean + noise.sqrt() * (k @ c["alpha"])
            posterior = (self.gp_amp_ - ((k @ c["kinv"]) * k).sum(1)).clamp_min(0.0)
            var = var_theta + noise * (self.gp_white_ + posterior)
        return torch.clamp(mean, max=self.cap_), var.sqrt()

    def _tensors(self, dtype: torch.dtype) -> dict:
        """The fitted arrays the prediction reads, as tensors of ``dtype`` (made once)."""
        if dtype not in self._torch:
            c = {"scale": torch.as_tensor(self.scale_).to(dtype), "exponent": None}
            if np.any(self.exponent_ != 1.0):
                c["exponent"] = torch.as_tensor(self.exponent_[self.kind_index_]).to(dtype)
            c.update({k: v.to(dtype) for k, v in self._param_quadratic().items()})
            if self.Z_train_ is not None:
                Z = torch.as_tensor(self.Z_train_)
                c.update(Z=Z.to(dtype), Z2=(Z * Z).sum(1)[None].to(dtype),
                         alpha=torch.as_tensor(self.gp_alpha_).to(dtype),
                         kinv=torch.as_tensor(self.gp_kinv_).to(dtype))  # fmt: skip
            self._torch[dtype] = c
        return self._torch[dtype]

    def _param_quadratic(self) -> dict:
        """The parameters' covariance C as a quadratic form in the per-coordinate gradient.

        The gradient of the prior mean in (log_a, v, u) is G A with G = d mean / d log a_d
        (N, D) and A = [1 | kind one-hot | identity] (D, 1 + kinds + D); the rest, e (N, m),
        is d mean / d (power, floor) (power only when learned). So g' C g is
        G Q G' + 2 G R e' + e S e' with Q = A C_aa A', R = A C_ae, S = C_ee."""
        dim = self.n_features_in_
        kinds = np.eye(self.n_kinds_)[self.kind_index_]
        A = np.concatenate([np.ones((dim, 1)), kinds, np.eye(dim)], axis=1)
        n = A.shape[1]
        C = self.param_cov_
        return {"Q": torch.as_tensor(A @ C[:n, :n] @ A.T), "R": torch.as_tensor(A @ C[:n, n:]),
                "S": torch.as_tensor(C[n:, n:])}  # fmt: skip

    def _param_var(
        self, t: torch.Tensor, a: torch.Tensor, lsum: torch.Tensor, c: dict
    ) -> torch.Tensor:
        """g(x)' C g(x): the prior's variance from its parameters' Laplace covariance C,
        with g the gradient of the prior mean in (log_a, v, u, [power], floor)."""
        span, p = self.top_ - self.floor_, self.power_
        lsum = lsum.clamp_min(1e-12)
        lp = lsum if p == 1.0 else lsum**p
        e = torch.exp(-lp)
        dmean = -(span * e * p * lsum ** (p - 1))  # d mean / d (sum_d a_d t_d)
        G = dmean[:, None] * a * t  # d mean / d log a_d
        rest = [(1 - e)[:, None]]  # d mean / d floor
        if self.power is None:  # d mean / d power
            rest.insert(0, (-span * e * lp * torch.log(lsum))[:, None])
        learned = self.learned_kinds_
        if len(learned):  # d mean / d q_k: t = t0^q, so d t / d q = t ln(t) / q
            at_log_t = a * torch.where(
                t > 0, t * torch.log(t.clamp_min(1e-300)), torch.zeros_like(t)
            )
            kinds = torch.as_tensor(self.kind_index_)
            dq = [
                dmean * at_log_t[:, kinds == k].sum(1) / float(self.exponent_[k]) for k in learned
            ]
            rest = [torch.stack(dq, 1)] + rest
        E = torch.cat(rest, dim=1)
        var = ((G @ c["Q"]) * G).sum(1) + 2 * ((G @ c["R"]) * E).sum(1) + ((E @ c["S"]) * E).sum(1)
        return var.clamp_min(0.0)

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
            "param_cov": torch.from_numpy(self.param_cov_),
            "gp": {}
            if self.Z_train_ is None
            else {k: torch.from_numpy(getattr(self, k)) for k in _GP_ARRAYS},
        }
        torch.save(blob, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> tuple[PriorModel, dict]:
        blob, header = read_header(path, FORMAT, VERSION, "a seernet prior-model predictor")
        try:
            params = header["params"]
            model = cls(**params)
            model._setup(len(params["kinds"]))
            model.gp_code_scale_ = 0.0  # files from before ``code_weight`` have none
            for k, v in header["fitted"].items():
                setattr(model, k, tuple(v) if isinstance(v, list) else v)
            model.scale_ = blob["scale"].numpy()
            model.exponent_ = np.asarray(model.exponent_, dtype=np.float64)  # absent: _setup's
            model.param_cov_ = blob["param_cov"].numpy()
            model.Z_train_ = None
            for k, v in blob["gp"].items():
                setattr(model, k, v.numpy())
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{path} is an incomplete or older prior-model file ({err}); refit it"
            ) from None
        return model, header["metadata"]


_FITTED_SCALARS = (
    "top_",
    "exponent_",
    "floor_",
    "power_",
    "n_kinds_",
    "cap_",
    "sigma0_",
    "sigma1_",
    "gp_amp_",
    "gp_length_",
    "gp_white_",
    "gp_code_scale_",
)
_GP_ARRAYS = ("Z_train_", "gp_kinv_", "gp_alpha_")


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
