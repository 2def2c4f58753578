"""Shared by the reliability suite: the real CLI as a subprocess, tiny workspaces, file snapshots."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seernet.cli.main import main

# The cheapest protocol that still runs every stage of an evaluation.
FAST = ["--finetune-steps", "0", "--bn-batches", "1", "--val-limit", "50", "--strategy", "random"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m seernet.cli.main ARGS`` on one thread, as a user would run it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "seernet.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root``: size, mtime and content hash (to prove nothing changed)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*")) if p.is_file()
    }  # fmt: skip


def collect_in_process(ws: Path, run_args: list[str], n: int, *extra: str) -> None:
    """Fill a workspace quickly (in this process: no interpreter start-up per call)."""
    assert (
        main(["collect", "--workdir", str(ws), *run_args, "--samples", str(n), *FAST, *extra]) == 0
    )


@pytest.fixture(scope="session")
def fast() -> list[str]:
    """``FAST`` for test modules (importlib mode cannot import conftest by name)."""
    return list(FAST)


@pytest.fixture(scope="session")
def cli():  # returns the helper
    return run_cli


@pytest.fixture(scope="session")
def tree_snapshot():  # returns the helper
    return snapshot


@pytest.fixture(scope="session")
def fill():  # returns the helper
    return collect_in_process
