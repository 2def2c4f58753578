"""The workspace folder that carries a run from step to step, described by ``seernet.json``.

The first command writes the run's identity (model, weights, dataset, split, seeds);
every later command reads it, and refuses settings or artifacts that belong to
another run instead of silently mixing them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from seernet.errors import UserError
from seernet.workspace.artifacts import CONFIG_NAME, write_json

REPO_DATA = Path(__file__).resolve().parents[2] / "data"
DEFAULT_MODEL, DEFAULT_DATASET = "resnet20", "fashion-mnist"
DEFAULT_WEIGHTS = REPO_DATA / "resnet20_fmnist.pt"


@dataclass
class RunConfig:
    """Identity of a run; fields that define the model or data may not change later."""

    model: str = DEFAULT_MODEL
    dataset: str = DEFAULT_DATASET
    data_dir: str | None = None
    weights: str | None = None
    val_size: int = 5000
    split_seed: int = 0
    image_size: int | None = None  # None: the dataset's own size
    metric: str | None = None  # plug-in FILE.py:CALLABLE; None: top-1 accuracy
    loss: str | None = None  # plug-in FILE.py:CALLABLE; None: cross-entropy
    space: dict[str, Any] = field(default_factory=dict)

    # Changing these would make earlier samples and predictors meaningless.
    IDENTITY = ("model", "dataset", "val_size", "split_seed", "image_size", "metric", "loss")


class Workspace:
    """A folder holding ``seernet.json`` and every artifact of one run."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"--workdir {self.root} is a file, not a folder: choose another path")

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    def path(self, *parts: str) -> Path:
        """Path of an artifact inside the workspace."""
        return self.root.joinpath(*parts)

    def exists(self) -> bool:
        return self.config_path.is_file()

    def read(self) -> RunConfig:
        """Read ``seernet.json``; a missing or corrupt file is a clear error."""
        if not self.exists():
            raise UserError(
                f"{self.root} is not a seernet workspace yet (no {CONFIG_NAME}): run 'seernet pretrain' or 'seernet collect' first"
            )
        try:
            raw = json.loads(self.config_path.read_text())
            known = {f.name for f in fields(RunConfig)}
            return RunConfig(**{k: v for k, v in raw.items() if k in known})
        except (json.JSONDecodeError, TypeError) as exc:
            raise UserError(f"{self.config_path} is corrupt ({exc}); fix or delete it") from exc

    def write(self, config: RunConfig) -> None:
        """Write ``seernet.json`` atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, asdict(config), sort_keys=True)

    def open(self, requested: dict[str, Any]) -> RunConfig:
        """Create the workspace from ``requested`` settings, or check them against it.

        ``requested`` holds only what the user gave explicitly (None = not given).
        """
        given = {k: v for k, v in requested.items() if v is not None}
        if not self.exists():
            config = RunConfig(**given)
            if config.weights is None and (config.model, config.dataset) == (
                DEFAULT_MODEL,
                DEFAULT_DATASET,
            ):
                config.weights = str(DEFAULT_WEIGHTS)
            self.write(config)
            return config
        config = self.read()
        for key in RunConfig.IDENTITY:
            if key in given and given[key] != getattr(config, key):
                raise UserError(
                    f"workspace {self.root} was made for {key}={getattr(config, key)!r}, not {given[key]!r}: "
                    "use another --workdir for another run"
                )
        changed = False
        for key in ("data_dir", "weights"):
            if key in given and given[key] != getattr(config, key):
                setattr(config, key, given[key])
                changed = True
        if changed:
            self.write(config)
        return config
