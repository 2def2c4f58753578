"""The sample store: measured (policy, accuracy) samples of one policy space, in one HDF5 file.

Append-only and crash-safe. Every append copies the file to ``<name>.tmp``, grows the
copy by one row, sets ``n_committed`` last, fsyncs it and renames it over the store
(``os.replace`` is atomic). So the file at the store's path is at every moment a
cleanly closed HDF5 file: a kill -9 loses at most the sample in flight (a stale
``.tmp`` may remain; the next append overwrites it), and plain h5py can read the
store while ``seernet collect`` is still writing it. An append takes about 10 ms
(mostly the fsync; the copy is under a millisecond for thousands of samples), while
one evaluation takes seconds.

One writer at a time: a writer holds ``flock`` on ``<name>.lock`` (released by the
kernel when its process dies). Readers take no lock.

Schema (format_version 1), N rows, readers trust only rows ``[:n_committed]``::

    /encoded        (N, D) float64  policy in the space's codec, values in [0, 1]
    /choices        (N, R) int32    raw choices: kept channels per group, then bit-widths
    /accuracy       (N,)   float64  measured top-1 on the validation split, in [0, 1]
    /costs/<name>   (N,)   float64  one dataset per cost (flops, bitops, ...)
    /strategy       (N,)   S32      how the policy was chosen (ASCII/UTF-8 bytes)
    /round          (N,)   int32    active-sampling round (0 = random warm-up)
    /seed           (N,)   int64    seed of the evaluation
    /seconds        (N,)   float64  wall time of the evaluation
    /time           (N,)   float64  unix time when the sample was measured

    root attributes: format_version (int), n_committed (int), space_fingerprint (str),
    model (str), dataset (str), protocol (JSON str), cost_names (JSON list, column
    order), plus the caller's meta: str/int/float/bool as is, anything else as JSON.

Datasets are chunked, resizable (maxshape None) and Fletcher-32 checksummed, so a
corrupted chunk is refused instead of read as numbers.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import time as unix_now
from typing import IO, Any

import h5py
import numpy as np

from seernet.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer is then the user's duty
    fcntl = None

FORMAT_VERSION = 1
STRATEGY_BYTES = 32
# Two encodings closer than this are the same policy (codec values sit on a grid).
KEY_DECIMALS = 8
# Per-row columns: name -> HDF5 dtype (encoded, choices and costs are handled apart).
SCALAR_COLUMNS = {
    "accuracy": "f8",
    "strategy": f"S{STRATEGY_BYTES}",
    "round": "i4",
    "seed": "i8",
    "seconds": "f8",
    "time": "f8",
}
RESERVED_ATTRS = (
    "format_version",
    "n_committed",
    "space_fingerprint",
    "model",
    "dataset",
    "protocol",
    "cost_names",
)
# h5py raises these for foreign, truncated or corrupted files.
READ_ERRORS = (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError)


@dataclass(eq=False)
class Sample:
    """One measured policy."""

    encoded: np.ndarray
    choices: tuple[int, ...]
    accuracy: float
    costs: dict[str, float]
    strategy: str
    round: int = 0
    seed: int = 0
    seconds: float = 0.0
    time: float = field(default_factory=unix_now)

    def __post_init__(self) -> None:
        self.encoded = np.asarray(self.encoded, dtype=np.float64).reshape(-1)
        self.choices = tuple(int(c) for c in self.choices)
        self.accuracy = float(self.accuracy)
        self.costs = {k: float(v) for k, v in self.costs.items()}


@dataclass
class StoreSpec:
    """What a store is about, fixed at creation; resuming with another spec is refused.

    ``protocol`` holds the settings that define what an accuracy means (BN batches,
    fine-tune steps, split); ``meta`` is free-form and not compared on resume.
    """

    fingerprint: str
    dim: int
    n_choices: int
    cost_names: list[str]
    model: str
    dataset: str
    protocol: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    IDENTITY = ("fingerprint", "dim", "n_choices", "cost_names", "model", "dataset", "protocol")

    def __post_init__(self) -> None:
        self.cost_names = list(self.cost_names)
        if len(set(self.cost_names)) != len(self.cost_names) or any(
            not n or "/" in n for n in self.cost_names
        ):
            raise ValueError(
                f"cost names must be unique, non-empty and free of '/': {self.cost_names}"
            )
        clash = sorted(set(self.meta) & set(RESERVED_ATTRS))
        if clash:
            raise ValueError(f"meta keys {clash} are reserved by the sample store")


def row_key(encoded: np.ndarray) -> bytes:
    """Hashable identity of an encoded policy (rounded; -0.0 and 0.0 agree)."""
    return (
        np.round(np.asarray(encoded, dtype=np.float64).reshape(-1), KEY_DECIMALS) + 0.0
    ).tobytes()


def _column(name: str, dtype: type) -> property:
    """A read-only (N,) array of one per-row field, for the accessors of SampleStore."""

    def get(self: SampleStore) -> np.ndarray:
        return np.array([getattr(s, name) for s in self._samples], dtype=dtype)

    return property(get, doc=f"(N,) {np.dtype(dtype).name} array of the committed rows' {name}.")


class SampleStore:
    """Append-only HDF5 file of the samples of one policy space; see the module docstring."""

    def __init__(self, path: Path, spec: StoreSpec, samples: list[Sample]) -> None:
        self.path = path
        self._lock: IO[str] | None = None
        self._load(spec, samples)

    def _load(self, spec: StoreSpec, samples: list[Sample]) -> None:
        self.spec, self._samples = spec, samples
        self._keys = {row_key(s.encoded) for s in samples}

    # --- opening -----------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, spec: StoreSpec) -> SampleStore:
        """Create an empty store; an existing file at ``path`` is refused, never replaced."""
        path = Path(path)
        lock = _take_lock(path)
        if path.exists():
            if lock is not None:
                lock.close()
            raise UserError(f"{path} already exists: open it instead, or choose another --workdir")
        _commit(path, lambda tmp: _write_empty(tmp, spec), fresh=True)
        store = cls.open(path, fingerprint=spec.fingerprint)
        store._lock = lock
        return store

    @classmethod
    def open(cls, path: str | Path, fingerprint: str | None = None) -> SampleStore:
        """Open an existing store; with ``fingerprint``, refuse one of another policy space."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"sample store {path} does not exist: run 'seernet collect' first")
        spec, samples = _read(path)
        if fingerprint is not None and spec.fingerprint != fingerprint:
            raise UserError(
                f"{path} holds samples of policy space {spec.fingerprint}, not of this one "
                f"({fingerprint}): use another --workdir, or the model and space settings that made it"
            )
        return cls(path, spec, samples)

    @classmethod
    def open_or_create(cls, path: str | Path, spec: StoreSpec) -> SampleStore:
        """Resume the store at ``path`` if there is one with the same spec, else create it."""
        if not Path(path).exists():
            return cls.create(path, spec)
        store = cls.open(path, fingerprint=spec.fingerprint)
        differ = [k for k in StoreSpec.IDENTITY if getattr(store.spec, k) != getattr(spec, k)]
        if differ:
            k = differ[0]
            raise UserError(
                f"{path} was collected with {k} {getattr(store.spec, k)!r}, not {getattr(spec, k)!r}: "
                "its samples would not be comparable; use another --workdir"
            )
        return store

    def close(self) -> None:
        """Give up the writer lock (reading still works)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -----------------------------------------------------------------------
    def append(self, sample: Sample, *, allow_duplicate: bool = False) -> None:
        """Validate ``sample`` and commit it to disk before returning."""
        self._validate(sample)
        if self._lock is None:
            self._lock = _take_lock(self.path)
            # Another writer may have appended between our open and taking the lock.
            self._load(*_read(self.path))
        key = row_key(sample.encoded)
        if key in self._keys and not allow_duplicate:
            raise ValueError(f"policy already measured in {self.path}; check contains() first")
        n = len(self._samples)
        _commit(self.path, lambda tmp: _write_row(tmp, n, sample, self.spec.cost_names))
        self._samples.append(sample)
        self._keys.add(key)

    def _validate(self, sample: Sample) -> None:
        """Refuse rows that would poison the predictor or belong to another space."""
        spec = self.spec
        for what, got, want in (
            ("policy dimensions", sample.encoded.size, spec.dim),
            ("raw choices", len(sample.choices), spec.n_choices),
        ):
            if got != want:
                raise UserError(
                    f"sample has {got} {what} but {self.path} stores {want}: it belongs to another "
                    "policy space; use another --workdir"
                )
        if not np.isfinite(sample.encoded).all():
            raise UserError(
                f"encoded policy contains NaN or inf; not stored in {self.path}: report this as a bug"
            )
        if math.isnan(sample.accuracy):
            raise UserError(
                f"accuracy is NaN (strategy {sample.strategy!r}, round {sample.round}); not stored: "
                "the evaluation diverged, check the data and the fine-tuning learning rate"
            )
        if set(sample.costs) != set(spec.cost_names):
            raise ValueError(
                f"sample costs {sorted(sample.costs)} != store costs {spec.cost_names}"
            )
        if len(sample.strategy.encode()) > STRATEGY_BYTES:
            raise ValueError(
                f"strategy name longer than {STRATEGY_BYTES} bytes: {sample.strategy!r}"
            )

    # --- reading -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, i: int) -> Sample:
        return self._samples[i]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def contains(self, encoded: np.ndarray) -> bool:
        """Whether this policy (encoded, rounded) was measured already."""
        return row_key(encoded) in self._keys

    @property
    def measured_keys(self) -> frozenset[bytes]:
        """``row_key`` of every stored row, for membership tests in bulk."""
        return frozenset(self._keys)

    @property
    def encoded(self) -> np.ndarray:
        """(N, D) float64 encoded policies."""
        return np.array([s.encoded for s in self._samples], dtype=np.float64).reshape(
            -1, self.spec.dim
        )

    @property
    def choices(self) -> np.ndarray:
        """(N, R) int64 raw choices: kept channels per group, then bit-widths."""
        rows = [s.choices for s in self._samples]
        return np.array(rows, dtype=np.int64).reshape(-1, self.spec.n_choices)

    @property
    def costs(self) -> dict[str, np.ndarray]:
        """Cost name -> (N,) float64."""
        return {k: np.array([s.costs[k] for s in self._samples]) for k in self.spec.cost_names}

    accuracy = _column("accuracy", np.float64)
    strategy = _column("strategy", np.str_)
    round = _column("round", np.int64)
    seed = _column("seed", np.int64)
    seconds = _column("seconds", np.float64)
    time = _column("time", np.float64)


# --- file format -------------------------------------------------------------------------
def _spec_attrs(spec: StoreSpec) -> dict[str, Any]:
    """Root attributes of a new store: the caller's meta, then the reserved ones."""
    attrs: dict[str, Any] = {
        k: v if isinstance(v, str | int | float | bool) else json.dumps(v)
        for k, v in spec.meta.items()
    }
    attrs.update(
        format_version=FORMAT_VERSION,
        n_committed=0,
        space_fingerprint=spec.fingerprint,
        model=spec.model,
        dataset=spec.dataset,
        protocol=json.dumps(spec.protocol, sort_keys=True),
        cost_names=json.dumps(spec.cost_names),
    )
    return attrs


def _new_column(group: h5py.Group, name: str, dtype: str, width: int | None = None) -> None:
    shape, chunks = ((0,), (256,)) if width is None else ((0, width), (64, max(width, 1)))
    group.create_dataset(
        name, shape, maxshape=(None,) + shape[1:], chunks=chunks, dtype=dtype, fletcher32=True
    )


def _write_empty(tmp: Path, spec: StoreSpec) -> None:
    # v108 bounds: checksummed metadata, still readable by any HDF5 since 1.8.
    with h5py.File(tmp, "w", libver=("v108", "v108")) as f:
        _new_column(f, "encoded", "f8", spec.dim)
        _new_column(f, "choices", "i4", spec.n_choices)
        for name, dtype in SCALAR_COLUMNS.items():
            _new_column(f, name, dtype)
        costs = f.create_group("costs")
        for name in spec.cost_names:
            _new_column(costs, name, "f8")
        f.attrs.update(_spec_attrs(spec))


def _write_row(tmp: Path, n: int, sample: Sample, cost_names: list[str]) -> None:
    """Grow every column to ``n + 1`` rows, write row ``n``, then bump ``n_committed``."""
    values: dict[str, Any] = {
        "encoded": sample.encoded,
        "choices": np.asarray(sample.choices, dtype=np.int32),
        "strategy": sample.strategy.encode(),
        **{k: getattr(sample, k) for k in SCALAR_COLUMNS if k != "strategy"},
        **{f"costs/{k}": sample.costs[k] for k in cost_names},
    }
    with h5py.File(tmp, "r+") as f:
        for name, value in values.items():
            ds = f[name]
            if ds.shape[0] <= n:
                ds.resize(n + 1, axis=0)
            ds[n] = value
        f.attrs["n_committed"] = n + 1


def _read(path: Path) -> tuple[StoreSpec, list[Sample]]:
    """Spec and committed rows, or a UserError for anything that is not a valid store."""
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            version = int(attrs["format_version"])
            if version > FORMAT_VERSION:
                raise UserError(
                    f"{path} was written by a newer seernet (store format {version}): upgrade seernet"
                )
            n = int(attrs["n_committed"])
            spec = StoreSpec(
                fingerprint=attrs["space_fingerprint"],
                dim=f["encoded"].shape[1],
                n_choices=f["choices"].shape[1],
                cost_names=json.loads(attrs["cost_names"]),
                model=attrs["model"],
                dataset=attrs["dataset"],
                protocol=json.loads(attrs["protocol"]),
                meta={k: v for k, v in attrs.items() if k not in RESERVED_ATTRS},
            )
            # Reading every row now (a few MB at most) surfaces corruption here, not later.
            columns = {name: f[name][:n] for name in ("encoded", "choices", *SCALAR_COLUMNS)}
            costs = {k: f[f"costs/{k}"][:n] for k in spec.cost_names}
    except READ_ERRORS as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise UserError(
            f"{path} is not a readable seernet sample store ({reason}); it was left untouched: "
            "move it away or use another --workdir"
        ) from exc
    return spec, [_sample_at(columns, costs, i) for i in range(n)]


def _sample_at(columns: dict[str, np.ndarray], costs: dict[str, np.ndarray], i: int) -> Sample:
    return Sample(
        encoded=columns["encoded"][i],
        choices=columns["choices"][i],
        accuracy=columns["accuracy"][i],
        costs={k: v[i] for k, v in costs.items()},
        strategy=columns["strategy"][i].decode(),
        round=int(columns["round"][i]),
        seed=int(columns["seed"][i]),
        seconds=float(columns["seconds"][i]),
        time=float(columns["time"][i]),
    )


def _plain(value: Any) -> Any:
    """numpy scalars from h5py attributes as Python values."""
    return value.item() if isinstance(value, np.generic) else value


# --- crash safety ------------------------------------------------------------------------
def _commit(path: Path, write: Callable[[Path], None], fresh: bool = False) -> None:
    """Apply ``write`` to a copy of ``path`` (or a new file), fsync, and rename it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        if not fresh:
            shutil.copyfile(path, tmp)
        write(tmp)
        # Data on disk before the rename: after a power cut the path holds the old or the
        # new file, never an empty one. The directory is not fsynced: losing the rename
        # costs at most the last sample, and it would double the append time.
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _take_lock(path: Path) -> IO[str] | None:
    """Exclusive writer lock on ``<path>.lock``; the kernel drops it when the process dies."""
    if fcntl is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 - held for the store's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise UserError(
            f"another process is writing to {path}: wait for it to finish, or use another --workdir"
        ) from exc
    return handle


__all__ = ["FORMAT_VERSION", "Sample", "SampleStore", "StoreSpec", "row_key"]
