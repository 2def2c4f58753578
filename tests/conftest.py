"""Shared fixtures: a tiny Fashion-MNIST-format dataset written to disk (no real data needed)."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

# numpy's and scipy's OpenBLAS start one thread per core. The predictor's fits are
# least-squares solves with many SVDs of small (~70 x 55) Jacobians, for which a second
# thread only adds waiting: with the CPU shared (this suite beside other work on 2 cores)
# a PriorModel fit on 17 samples took 32-50 s with 2 threads and 1.6 s with 1 (same
# predictions), and fit-predictor --folds 2 took 57 s against 12 s. One BLAS thread in
# this process and (through the environment) in every CLI and worker the tests start.
# Torch is not affected (its BLAS is MKL, its threads OpenMP's).
os.environ["OPENBLAS_NUM_THREADS"] = "1"
threadpool_limits(1, user_api="blas")

# The suite runs in two pytest-xdist workers (``-n 2`` in pyproject's addopts), one per
# core of the project's 2-core machine: one torch thread each, here and (through the
# environment) in every CLI and worker process a test starts. Small convolutions gain
# little from a second thread, two test files side by side gain almost twice.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as a gzipped idx file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_fake_fmnist(root: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """Learnable toy data in Fashion-MNIST's file format: the class sets a bright stripe."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, :] = 250
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture(scope="session")
def fake_fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_fmnist(tmp_path_factory.mktemp("fmnist"))


NO_SEERNET = """
import sys
sys.modules["seernet"] = None
import torch
model = torch.jit.load(sys.argv[1])
io = torch.load(sys.argv[2])
print((model(io["x"]) - io["y"]).abs().max().item())
"""


@pytest.fixture
def no_seernet_script() -> str:
    """A ``python -c`` script that loads a TorchScript file with seernet made unimportable."""
    return NO_SEERNET


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    """Outputs of an ONNX file: onnxruntime when installed, else onnx's reference evaluator."""
    try:
        import onnxruntime as ort
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(str(path)).run(None, {"input": x})[0]
    return ort.InferenceSession(str(path)).run(None, {"input": x})[0]


@pytest.fixture
def run_onnx():  # returns the helper
    """Outputs of an ONNX file, as a function of (path, x)."""
    return _run_onnx


@pytest.fixture(scope="session")
def run_args(tmp_path_factory: pytest.TempPathFactory, fake_fmnist: Path) -> list[str]:
    """Workspace options for a ResNet-20 with random weights on the fake data."""
    import torch

    from seernet.models import create_model
    from seernet.workspace.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    save_checkpoint(root / "w.pt", create_model("resnet20", 10, 1), {"model": "resnet20"})
    return ["--data-dir", str(fake_fmnist), "--val-size", "100", "--weights", str(root / "w.pt")]


def _noise_predictor(ws: Path) -> None:
    """Write ``ws/predictor.pt``: the prior model ``fit-predictor`` writes, on made-up tables
    (damage falls linearly to the top) and 40 random policies: the solve's code path, cheaply."""
    import torch

    from predictor.prior_model import PriorModel
    from seernet.steps.context import RunContext
    from seernet.workspace.folder import Workspace

    space = RunContext(Workspace(ws), Workspace(ws).read(), torch.device("cpu")).space
    x = np.random.default_rng(0).uniform(0, 1, (40, space.dim))
    levels = [lv.tolist() for lv in space.levels()]
    damage = [(1.0 - np.asarray(lv)).tolist() for lv in levels]
    kinds = [0] * space.n_groups + [1] * (space.dim - space.n_groups)
    model = PriorModel(levels, damage, kinds).fit(x, 50 + 10 * x.mean(1))
    model.save(ws / "predictor.pt", {"space_fingerprint": space.fingerprint})


@pytest.fixture(scope="session")
def noise_predictor():  # returns the helper
    return _noise_predictor


@pytest.fixture
def make_image_folder():  # returns the helper
    """A function writing train/ and val/ with two classes of random PNGs cycling through sizes (w, h)."""

    def make(root: Path, sizes: list[tuple[int, int]], per_class: int = 3) -> Path:
        from PIL import Image

        rng = np.random.default_rng(0)
        k = 0
        for split in ("train", "val"):
            for cls in ("a", "b"):
                (root / split / cls).mkdir(parents=True)
                for i in range(per_class):
                    w, h = sizes[k % len(sizes)]
                    k += 1
                    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
                        root / split / cls / f"{i}.png"
                    )
        return root

    return make


@pytest.fixture
def cheap_hessian(monkeypatch):
    """HAWQ's sensitivities from one batch and one probe (the default 256 HVPs take minutes);
    the list records the channel counts of every Hessian taken."""
    import seernet.compression.hawq as hawq

    calls = []
    real = hawq.pruned_sensitivity

    def one_probe(model, space, train, channels, probes=1, n_batches=1, **kwargs):
        calls.append(channels)
        return real(model, space, train, channels, 1, 1, **kwargs)  # kwargs: the task's loss

    monkeypatch.setattr(hawq, "pruned_sensitivity", one_probe)
    return calls


@pytest.fixture(scope="session", autouse=True)
def quick_sensitivity():
    """Damage tables from the lowest level of each coordinate, one loss batch, one
    calibration batch and one BatchNorm batch, each measured once per session: every
    collect on a new workspace measures one (at its first active round, or in
    fit-predictor), and the full table costs minutes.

    Session-scoped, so that it is in force before any module- or session-scoped fixture
    runs: as a function-scoped fixture it was set up after them, and the module fixtures
    that run fit-predictor (tests/test_cli_options.py's json_runs, the ``fitted``
    workspaces of tests/test_pipeline.py and tests/reliability/test_bad_inputs.py)
    measured the full 156-variant table, 220-650 s each on a loaded machine.

    Once per session: the measurement is deterministic, and several tests measure the
    same table (the same weights, data, space and protocol in another workspace); see
    ``_memo_damage``. What a workspace caches on disk, and when it re-measures, is
    unchanged: only the measurement itself is reused."""
    import seernet.compression.sensitivity as sensitivity
    import seernet.steps.sensitivity as steps_sensitivity

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sensitivity, "PRUNE_LEVEL_STEP", 100)
        mp.setattr(sensitivity, "BITS_LEVEL_STEP", 100)
        mp.setattr(sensitivity, "LOSS_BATCHES", 1)
        mp.setattr(sensitivity, "CALIB_BATCHES", 1)
        mp.setattr(sensitivity, "BN_BATCHES", 1)
        mp.setattr(
            steps_sensitivity, "measure_damage", _memo_damage(steps_sensitivity.measure_damage)
        )
        yield


def _memo_damage(measure):  # returns the wrapper
    """``measure_damage`` that measures each distinct input once per session.

    The key is everything the table depends on: the space's fingerprint, the model's class
    and weights, the protocol, the device, every training item (only for training sets of
    up to 5000 items; larger ones are measured every time), the task and the module's
    settings. A learned criterion, or a task with its own loss or metric, is measured
    every time. Each call gets its own copy."""
    import copy
    import hashlib
    import json

    import seernet.compression.sensitivity as sensitivity

    tables: dict[tuple, object] = {}

    def key(model, space, splits, protocol, device, criterion) -> tuple | None:
        task = splits.task
        if protocol.criterion not in ("l1", "l2") or (task.loss, task.metric) != (None, None):
            return None
        if len(splits.train) > 5000:
            return None
        h = hashlib.sha256()
        for name, t in model.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        for i in range(len(splits.train)):
            for t in splits.train[i]:
                h.update(np.asarray(t).tobytes())
        settings = tuple(getattr(sensitivity, n) for n in (
            "PRUNE_LEVEL_STEP", "BITS_LEVEL_STEP", "LOSS_BATCHES", "CALIB_BATCHES", "BN_BATCHES", "DAMAGE", "VERSION"
        ))  # fmt: skip
        return (space.fingerprint, type(model).__qualname__, h.hexdigest(), len(splits.train),
                json.dumps(protocol.to_json(), sort_keys=True), str(device), settings)  # fmt: skip

    def measure_once(model, space, splits, protocol, device, criterion=None, *args, **kwargs):
        k = key(model, space, splits, protocol, device, criterion)
        if k is None:
            return measure(model, space, splits, protocol, device, criterion, *args, **kwargs)
        if k not in tables:
            tables[k] = measure(model, space, splits, protocol, device, criterion, *args, **kwargs)
        return copy.deepcopy(tables[k])

    return measure_once
