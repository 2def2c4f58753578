"""Save and load an MLPEnsemble as tensors plus a JSON header: no pickle, no code on load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from predictor.stacked_mlp import StackedMLP

if TYPE_CHECKING:
    from predictor.ensemble import MLPEnsemble

FORMAT = "seernet.predictor.mlp-ensemble"
# Version 2 added the monotone directions, the cap and the calibrated std scale; a
# version-1 file has none of them and is refused (refit to get them). The header's
# "monotone_signs" is what the members were built with (null: unconstrained), so a
# file written when True was the default loads as the monotone model it was.
VERSION = 2
# Fitted scalars beyond the scalers, saved in the JSON header under these names.
CALIBRATION_ATTRS = (
    "noise_std_",
    "noise_source_",
    "cap_",
    "cap_source_",
    "cap_width_",
    "std_scale_",
    "calibration_coverage_",
)


def save(model: MLPEnsemble, path: str | Path, metadata: dict) -> None:
    """Write hyperparameters, input dim, scalers, member weights and caller metadata."""
    params = model.get_params()
    params["hidden"] = [int(h) for h in params["hidden"]]
    # None, True and False are stored as they are (True: +1 for every input, as files
    # from before the directions were explicit also say); an array as a list of signs.
    monotone = params["monotone"]
    if isinstance(monotone, bool | np.bool_):
        params["monotone"] = bool(monotone)
    elif monotone is not None:
        params["monotone"] = [int(v) for v in np.asarray(monotone).reshape(-1)]
    signs = model.monotone_signs_
    header = {
        "format": FORMAT,
        "version": VERSION,
        "params": params,
        "n_features_in": int(model.n_features_in_),
        "n_epochs": int(model.n_epochs_),
        "y_mean": model.y_mean_,
        "y_std": model.y_std_,
        "monotone_signs": None if signs is None else [int(v) for v in signs],
        "calibration": {name: getattr(model, name) for name in CALIBRATION_ATTRS},
        "metadata": metadata,
    }
    try:
        header_json = json.dumps(header)
    except TypeError as err:
        raise ValueError(f"metadata must be JSON-serialisable: {err}") from None
    blob = {
        "header": header_json,
        "x_mean": torch.as_tensor(model.x_mean_, dtype=torch.float64),
        "x_std": torch.as_tensor(model.x_std_, dtype=torch.float64),
        "state": {k: v.detach().cpu() for k, v in model.members_.state_dict().items()},
    }
    torch.save(blob, Path(path))


def read_header(path: str | Path, fmt: str, version: int, what: str) -> tuple[dict, dict]:
    """(tensors, JSON header) of a predictor file; ValueError ("refit it") unless it is
    a readable ``fmt`` file of ``version``. ``what`` names the kind in the message."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        header = json.loads(blob["header"])
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises many types on corrupt input; report one.
        raise ValueError(f"{path} is not a readable predictor file ({err}); refit it.") from None
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise ValueError(f"{path} is not {what}; refit it.")
    if header.get("version") != version:
        raise ValueError(
            f"{path} has {what} format version {header.get('version')}, this seernet reads {version}; refit it."
        )
    return blob, header


def load(cls: type[MLPEnsemble], path: str | Path) -> tuple[MLPEnsemble, dict]:
    """Rebuild the fitted ensemble from ``path``; raise ValueError if it is not one."""
    blob, header = read_header(
        path, FORMAT, VERSION, "an MLPEnsemble predictor file (monotone, capped, calibrated)"
    )
    try:
        model = cls(**{**header["params"], "hidden": tuple(header["params"]["hidden"])})
        signs = header["monotone_signs"]
        net = StackedMLP(
            model.n_members,
            header["n_features_in"],
            model.hidden,
            model.activation,
            signs=None if signs is None else torch.tensor(signs, dtype=torch.float32),
            linear_skip=model.linear_skip,
        )
        net.load_state_dict(blob["state"])
        _restore_fitted(model, header, blob, net)
    except (KeyError, TypeError, RuntimeError) as err:
        raise ValueError(
            f"{path} is an incomplete or inconsistent predictor file ({err}); refit it."
        ) from None
    return model, header["metadata"]


def _restore_fitted(
    model: MLPEnsemble, header: dict[str, Any], blob: dict, net: StackedMLP
) -> None:
    """Set the learned attributes exactly as ``fit`` leaves them."""
    model.n_features_in_ = header["n_features_in"]
    model.n_epochs_ = header["n_epochs"]
    model.x_mean_ = blob["x_mean"].numpy().astype(np.float64)
    model.x_std_ = blob["x_std"].numpy().astype(np.float64)
    model.y_mean_ = header["y_mean"]
    model.y_std_ = header["y_std"]
    signs = header["monotone_signs"]
    model.monotone_signs_ = None if signs is None else np.asarray(signs, dtype=np.float64)
    for name in CALIBRATION_ATTRS:
        setattr(model, name, header["calibration"][name])
    if model.calibration_coverage_ is not None:
        model.calibration_coverage_ = tuple(model.calibration_coverage_)
    model.members_ = net.eval().requires_grad_(False)
