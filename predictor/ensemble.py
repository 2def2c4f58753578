"""MLPEnsemble: a scikit-learn regressor made of M small torch MLPs, mean = prediction, spread = uncertainty."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from predictor import persistence
from predictor.calibration import (
    Monotone,
    best_corner_rows,
    conformal_scale,
    repeat_noise_std,
    resolve_signs,
    soft_cap,
)
from predictor.device import resolve_device, torch_threads
from predictor.stacked_mlp import StackedMLP
from predictor.training import TrainConfig, member_splits, train_members

# Floor on the member variance (in standardised target units) so that the gradient of
# the std stays finite where all members agree exactly.
_VAR_FLOOR = 1e-12
# With fewer rows than twice this, the spread is left unscaled (too few to calibrate).
_MIN_CALIBRATION_ROWS = 5


class MLPEnsemble(RegressorMixin, BaseEstimator):
    """Ensemble of ``n_members`` MLPs mapping an encoded policy in [0, 1]^D to accuracy.

    Inputs and targets are standardised with training-set statistics (a positive scale,
    so input directions are kept). Members differ by initialisation, by the random rows
    they hold out for early stopping and (with ``bootstrap``) by a bootstrap resample of
    the rest. ``predict(X, return_std=True)`` returns the (capped) mean of the members
    and their calibrated spread, in target units.

    Three promises. The first is opt-in, because only the caller knows which way each
    input moves the target; the other two are on by default:

    - **Monotone** (``monotone``, as scikit-learn's ``monotonic_cst``): None (the
      default) or False leaves the members unconstrained; an array of +1 / 0 / -1 per
      input makes every member non-decreasing / free / non-increasing in it; True means
      +1 for every input (kept for callers and saved files from before the directions
      were explicit). seernet's policy space passes its codec's signs (+1 everywhere:
      a larger code keeps more channels or bits). The constraint holds by construction
      (sign-constrained weights and monotone activations, see ``stacked_mlp``),
      everywhere, not only on the data. ``monotone_signs_`` records the signs used
      (None when unconstrained).
    - **Bounded** (``cap``): with ``"auto"`` no prediction exceeds ``cap_`` = the best
      measured accuracy of the best-corner policy (every constrained input at the best
      end of its observed range: the unpruned highest-bit all-ones row of seernet's
      codec; ``max(y)`` when that row was not measured or no direction was given) plus a noise margin
      ``noise_std_``. The margin is the pooled std of repeated measurements of the same
      policy when X holds repeats, else the root mean square of the fitted ensemble
      mean's residuals on all training rows (a residual-based estimate: early stopping
      keeps it from fitting the noise, and model error makes it err large). A number
      caps at that number; None does not cap. The cap is soft,
      ``cap - w * softplus((cap - m) / w)`` with ``w = cap_width_``, so the mean stays
      differentiable and increasing and still never exceeds the cap.
    - **Calibrated** (``coverage``): the members' std (ddof=1) is multiplied by
      ``std_scale_``, chosen by split conformal prediction on cross-fitted predictions
      (see ``_set_std_scale``) so that ``coverage`` of unseen rows lie within 2 std;
      ``calibration_coverage_`` records the fractions within 1 and 2 std on those rows.
      It costs ``calibration_folds`` extra fits on (k-1)/k of the rows (with k = 3,
      about three times the fit time).
      None keeps the raw spread, which measures disagreement only and was overconfident
      (about 30% within 1 std).

    Training is full-batch AdamW (``batch_size=None``) with decoupled ``weight_decay``
    and a group-lasso ``input_penalty`` on each input's weights (first layer, and the
    optional ``linear_skip`` path), so that policy dimensions that hardly matter are
    ignored rather than used to fit noise. The loss is Huber with ``huber_delta`` in
    standardised target units (None: MSE), so a few outlying measurements pull less.
    The defaults were chosen by 5-fold CV on the three SeerNet reference sets with fold
    seeds 1 and 2 (the published figures use seed 0), with the sets' directions given
    explicitly (-1 for pruning ratios, +1 for bit-widths): input_penalty 0.05
    and Huber 0.7 beat ridge, GP and random forest on all three there (0.3 and MSE, the
    old defaults, lost on MobileNetV2; a linear skip helped ResNet-18 and hurt
    MobileNetV2), and 8 members ranked better than 5 or 10. The active sampler asks for
    5 members explicitly, for speed. See ``benchmarks/bench_predictor.py``.

    ``n_threads`` is torch's CPU thread count during ``fit`` (restored afterwards; None
    keeps the caller's setting). ``random_state`` (an int) fixes everything: the same
    seed and data give bitwise identical predictions on the same machine and torch
    thread count. ``None`` draws a fresh seed.
    """

    def __init__(
        self,
        n_members: int = 8,
        hidden: Sequence[int] = (128, 128),
        activation: str = "relu",
        lr: float = 3e-3,
        weight_decay: float = 1e-2,
        input_penalty: float = 0.05,
        huber_delta: float | None = 0.7,
        linear_skip: bool = False,
        max_epochs: int = 1000,
        patience: int = 100,
        val_fraction: float = 0.2,
        batch_size: int | None = None,
        bootstrap: bool = False,
        monotone: Monotone = None,
        cap: float | str | None = "auto",
        coverage: float | None = 0.95,
        calibration_folds: int = 3,
        random_state: int | None = 0,
        device: str = "cpu",
        n_threads: int | None = 1,
    ) -> None:
        self.n_members = n_members
        self.hidden = hidden
        self.activation = activation
        self.lr = lr
        self.weight_decay = weight_decay
        self.input_penalty = input_penalty
        self.huber_delta = huber_delta
        self.linear_skip = linear_skip
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.bootstrap = bootstrap
        self.monotone = monotone
        self.cap = cap
        self.coverage = coverage
        self.calibration_folds = calibration_folds
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads

    def fit(self, X: Any, y: Any) -> MLPEnsemble:
        """Standardise, train all members at once with early stopping, cap and calibrate; return self."""
        X, y = check_X_y(X, y, dtype=np.float64, y_numeric=True)
        self._check_params(X.shape[0])
        signs = resolve_signs(self.monotone, X.shape[1])
        gen = torch.Generator().manual_seed(_seed(self.random_state))
        self._set_scalers(X, y)
        device = resolve_device(self.device)
        xs = torch.as_tensor((X - self.x_mean_) / self.x_std_, dtype=torch.float32, device=device)
        ys = torch.as_tensor((y - self.y_mean_) / self.y_std_, dtype=torch.float32, device=device)
        net = StackedMLP(
            self.n_members,
            X.shape[1],
            tuple(self.hidden),
            self.activation,
            generator=gen,
            signs=None if signs is None else torch.as_tensor(signs, dtype=torch.float32),
            linear_skip=self.linear_skip,
        ).to(device)
        splits = member_splits(X.shape[0], self.n_members, self.val_fraction, self.bootstrap, gen)
        cfg = TrainConfig(
            lr=self.lr,
            weight_decay=self.weight_decay,
            input_penalty=self.input_penalty,
            max_epochs=self.max_epochs,
            patience=self.patience,
            batch_size=self.batch_size,
            huber_delta=self.huber_delta,
        )
        # The matmuls here are small; on a busy machine more threads than free cores made a
        # fit 40x slower (OpenMP threads spinning against each other), one thread never does.
        with torch_threads(self.n_threads if device.type == "cpu" else None):
            self.n_epochs_ = train_members(net, xs, ys, splits, cfg, gen)
            self.members_ = net.eval().requires_grad_(False)
            with torch.no_grad():
                out = self.members_(xs).double().cpu().numpy() * self.y_std_ + self.y_mean_
        self.monotone_signs_ = signs
        self._set_cap(X, y, signs, out)
        self._set_std_scale(X, y, gen)
        return self

    def _set_cap(
        self, X: np.ndarray, y: np.ndarray, signs: np.ndarray | None, out: np.ndarray
    ) -> None:
        """The cap on predictions and the width of its soft edge, from the data (see the class docstring)."""
        noise = repeat_noise_std(X, y)
        self.noise_source_ = "repeats"
        if noise is None:
            noise = float(np.sqrt(np.mean((y - out.mean(axis=0)) ** 2)))
            self.noise_source_ = "residuals"
        self.noise_std_ = noise
        corner = best_corner_rows(X, signs)
        if self.cap is None:
            self.cap_, self.cap_source_ = None, "none"
        elif isinstance(self.cap, str):
            base = y[corner] if corner.any() else y
            self.cap_ = float(base.max() + noise)
            self.cap_source_ = "base policy" if corner.any() else "max(y)"
        else:
            self.cap_, self.cap_source_ = float(self.cap), "given"
        # The soft edge: half the margin, but never narrower than 1% of y's spread.
        self.cap_width_ = 0.5 * max(noise, 0.01 * self.y_std_)

    def _set_std_scale(self, X: np.ndarray, y: np.ndarray, gen: torch.Generator) -> None:
        """Scale the spread so that ``coverage`` of unseen rows lie within 2 std (split conformal).

        Cross-fitting over ``calibration_folds`` random folds: an ensemble like this one
        (same settings, no calibration) is fitted without each fold and predicts it, so
        every row gets a mean and a spread from members that never saw it, as a new
        policy does. The scale is the conformal quantile of |residual| / std over all
        rows. Ensembles fitted on fewer rows err more but also disagree more; the scale
        assumes the ratio carries over to the full-data ensemble (3 folds held it better
        than 2 on synthetic data). Each member's early-stopping rows would be cheaper but
        are not honest: the members that trained on a row agree there, and the ones that
        did not disagree with them by about the residual itself.
        """
        self.std_scale_, self.calibration_coverage_ = 1.0, None
        n = len(y)
        if self.coverage is None or self.n_members < 2 or n < 2 * _MIN_CALIBRATION_ROWS:
            # One member has no spread to scale; a handful of rows cannot calibrate it.
            return
        k = int(self.calibration_folds)
        fold = torch.randperm(n, generator=gen).numpy() % k
        seeds = torch.randint(0, 2**31 - 1, (k,), generator=gen).tolist()
        mean, std = np.empty(n), np.empty(n)
        for i, seed in enumerate(seeds):
            train, test = fold != i, fold == i
            twin = (
                clone(self)
                .set_params(coverage=None, cap=None, random_state=seed)
                .fit(X[train], y[train])
            )
            mean[test], std[test] = twin.predict(X[test], return_std=True)
        resid = np.abs(y - self._cap_np(mean))
        self.std_scale_ = conformal_scale(resid, std, float(self.coverage))
        s = self.std_scale_ * std
        self.calibration_coverage_ = (float(np.mean(resid <= s)), float(np.mean(resid <= 2 * s)))

    def _cap_np(self, out: np.ndarray) -> np.ndarray:
        if self.cap_ is None:
            return out
        return soft_cap(torch.as_tensor(out), self.cap_, self.cap_width_).numpy()

    def _set_scalers(self, X: np.ndarray, y: np.ndarray) -> None:
        """Training-set statistics used to standardise inputs and targets."""
        self.n_features_in_ = X.shape[1]
        self.x_mean_ = X.mean(axis=0)
        x_std = X.std(axis=0)
        # Constant columns would divide by zero; leave them centred but unscaled.
        self.x_std_ = np.where(x_std > 0, x_std, 1.0)
        self.y_mean_ = float(y.mean())
        self.y_std_ = float(y.std()) if y.std() > 0 else 1.0

    def predict(
        self, X: Any, return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Ensemble mean for each row of X, and with ``return_std`` the members' spread."""
        check_is_fitted(self, "members_")
        X = check_array(X, dtype=np.float64)
        self._check_dim(X.shape[1])
        x = torch.as_tensor(X, dtype=torch.float32, device=self._device())
        with torch.no_grad():
            mean, std = self.mean_std_torch(x)
        mean_np = mean.cpu().numpy().astype(np.float64)
        return (mean_np, std.cpu().numpy().astype(np.float64)) if return_std else mean_np

    def mean_std_torch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable mean (N,) and std (N,) in target units for encoded inputs x (N, D)."""
        check_is_fitted(self, "members_")
        if x.dim() != 2:
            raise ValueError(f"x must be a 2-D (N, D) tensor, got shape {tuple(x.shape)}")
        self._check_dim(x.shape[1])
        x_mean = torch.as_tensor(self.x_mean_).to(x)
        x_std = torch.as_tensor(self.x_std_).to(x)
        out = self.members_((x - x_mean) / x_std) * self.y_std_ + self.y_mean_
        mean = out.mean(dim=0)
        if self.cap_ is not None:
            mean = soft_cap(mean, self.cap_, self.cap_width_)
        # The spread is the uncapped members' disagreement: capping each member would make
        # them agree exactly wherever they all overshoot, which is where we know least.
        var = out.var(dim=0, correction=1) if out.shape[0] > 1 else torch.zeros_like(mean)
        std = torch.sqrt(var + _VAR_FLOOR * self.y_std_**2)
        return mean, std * self.std_scale_

    def save(self, path: str | Path, metadata: dict | None = None) -> None:
        """Write the fitted ensemble to one ``.pt`` file of tensors and a JSON header."""
        check_is_fitted(self, "members_")
        persistence.save(self, path, metadata or {})

    @classmethod
    def load(cls, path: str | Path) -> tuple[MLPEnsemble, dict]:
        """Read a file written by ``save``; return (model, metadata)."""
        return persistence.load(cls, path)

    def _check_params(self, n_samples: int) -> None:
        """Reject settings that cannot train, with one sentence each."""
        if int(self.n_members) < 1:
            raise ValueError(f"n_members must be at least 1, got {self.n_members}")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if n_samples < 2:
            raise ValueError(f"MLPEnsemble needs at least 2 samples to fit, got {n_samples}")
        if any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be positive, got {self.hidden}")
        if self.huber_delta is not None and not float(self.huber_delta) > 0:
            raise ValueError(f"huber_delta must be positive or None, got {self.huber_delta}")
        if int(self.calibration_folds) < 2:
            raise ValueError(f"calibration_folds must be at least 2, got {self.calibration_folds}")
        if self.coverage is not None and not 0.0 < float(self.coverage) < 1.0:
            raise ValueError(f"coverage must be in (0, 1) or None, got {self.coverage}")
        if isinstance(self.cap, str) and self.cap != "auto":
            raise ValueError(f"cap must be 'auto', a number or None, got {self.cap!r}")
        if (
            self.cap is not None
            and not isinstance(self.cap, str)
            and not np.isfinite(float(self.cap))
        ):
            raise ValueError(f"cap must be a finite number, got {self.cap}")

    def _check_dim(self, n_features: int) -> None:
        if n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but this MLPEnsemble was fitted on "
                f"{self.n_features_in_}; encode policies with the same policy space."
            )

    def _device(self) -> torch.device:
        return self.members_.weights[0].device


def _seed(random_state: int | None) -> int:
    """An int seed as given, or a fresh one for ``None`` (sklearn's convention)."""
    if random_state is None:
        return int(torch.randint(0, 2**62, ()).item())
    return int(random_state)
