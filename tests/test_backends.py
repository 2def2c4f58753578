"""Collect backends: process pool and Ray give the local backend's samples; dead Ray workers are retried."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from seernet.cli.main import main
from seernet.steps.backends import BackendConfig
from seernet.workspace.artifacts import SENSITIVITY_NAME
from seernet.workspace.store import SampleStore, row_key

FAST = [
    "--finetune-steps",
    "0",
    "--bn-batches",
    "1",
    "--val-limit",
    "50",
    "--threads-per-worker",
    "1",
]


# collect with random policies on two Ray workers (the retry tests vary --max-retries)
RAY_TWO_WORKERS = ("--strategy", "random", "--backend", "ray", "--workers", "2")


def collect(ws: Path, run_args: list[str], n: int, *extra: str) -> int:
    return main(["collect", "--workdir", str(ws), *run_args, "--samples", str(n), *FAST, *extra])


def samples(ws: Path) -> dict[bytes, tuple[float, int, str]]:
    """Policy -> (accuracy, round, strategy) of every stored row; asserts no row repeats."""
    with SampleStore.open(ws / "samples.h5") as store:
        out = {row_key(s.encoded): (s.accuracy, s.round, s.strategy) for s in store}
        assert len(out) == len(store)
        return out


@pytest.fixture(scope="module")
def local_random(tmp_path_factory, run_args) -> dict:
    ws = tmp_path_factory.mktemp("local") / "w"
    assert collect(ws, run_args, 4, "--strategy", "random") == 0
    return samples(ws)


def test_process_workers_equal_local_with_active_rounds(tmp_path: Path, run_args):
    # The warm-up is the 18 anchors (more than half of 22), then two active rounds of 2.
    active = ["--strategy", "active", "--batch-size", "2", "--warmup-fraction", "0.5"]
    assert collect(tmp_path / "a", run_args, 22, *active) == 0
    # "b" reads the damage tables "a" measured (measuring them again was half of this test's
    # time); the same table from worker processes is tests/test_sensitivity.py's.
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / SENSITIVITY_NAME, tmp_path / "b" / SENSITIVITY_NAME)
    assert collect(tmp_path / "b", run_args, 22, *active, "--workers", "2") == 0
    a, b = samples(tmp_path / "a"), samples(tmp_path / "b")
    assert a == b and {r for _, r, _ in a.values()} == {0, 1, 2}


def test_ray_missing_says_how_to_install(tmp_path: Path, run_args, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert collect(tmp_path / "w", run_args, 2, "--backend", "ray") == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.endswith("Ray is not installed: pip install 'seernet[ray]'")
        and len(err.splitlines()) == 1
    )
    assert not (tmp_path / "w").exists()


# One local cluster for the module's Ray tests (starting one took 7-11 s a test): every
# test collects into its own workspace, and the cluster restarts the workers they kill.
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip(
        "ray", reason="Ray is not installed (pip install 'seernet[ray]'); CI installs it"
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_equals_local(tmp_path: Path, run_args, local_random, ray_cluster):
    assert collect(tmp_path / "w", run_args, 4, *RAY_TWO_WORKERS) == 0
    assert samples(tmp_path / "w") == local_random


def test_ray_task_whose_worker_dies_is_retried_and_recorded_once(
    tmp_path: Path, run_args, local_random, ray_cluster, monkeypatch
):
    marker = tmp_path / "killed-once"
    real = BackendConfig.evaluator

    def evaluator(self, ctx, protocol):
        fn = real(self, ctx, protocol)
        flag = str(marker)

        def dies_once(x):  # a closure, so Ray ships it by value
            try:  # the first task to get here kills its own worker process
                os.close(os.open(flag, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return fn(x)
            os.kill(os.getpid(), signal.SIGKILL)

        return dies_once

    monkeypatch.setattr(BackendConfig, "evaluator", evaluator)
    ws = tmp_path / "w"
    assert collect(ws, run_args, 4, *RAY_TWO_WORKERS, "--max-retries", "2") == 0
    assert marker.exists()  # a worker really died
    assert samples(ws) == local_random  # all four, each once, same accuracies


def test_backend_options_are_validated():
    from seernet.errors import UserError

    for bad in (
        {"workers": 0},
        {"threads_per_worker": 0},
        {"address": "auto"},
        {"max_retries": -1},
    ):
        with pytest.raises(UserError):
            BackendConfig(**bad)
    assert not BackendConfig().parallel and BackendConfig(workers=2).parallel
    assert np.isclose(BackendConfig(backend="ray").cpus_per_task, 1.0)


def test_ray_retries_are_bounded(tmp_path: Path, run_args, ray_cluster, monkeypatch, capsys):
    def evaluator(self, ctx, protocol):
        def always_dies(x):
            os.kill(os.getpid(), signal.SIGKILL)

        return always_dies

    monkeypatch.setattr(BackendConfig, "evaluator", evaluator)
    ws = tmp_path / "w"
    code = collect(ws, run_args, 2, *RAY_TWO_WORKERS, "--max-retries", "1")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Ray gave up on an evaluation" in err[-1] and "--max-retries" in err[-1]
    assert len(samples(ws)) == 0  # the store exists, readable, with nothing half-written
