"""A truncated or corrupted sample store gives one clear error and is never overwritten."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import pytest


@pytest.fixture(scope="module")
def good_workspace(tmp_path_factory, run_args: list[str], fill) -> Path:
    ws = tmp_path_factory.mktemp("good") / "w"
    fill(ws, run_args, 2)
    return ws


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_chunk(path: Path) -> None:
    # Inside the stored rows of the accuracy column: its Fletcher-32 checksum must catch it.
    with h5py.File(path, "r") as f:
        info = f["accuracy"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    for i in range(info.byte_offset, info.byte_offset + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _garbage_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:512] = b"\0" * 512
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage", [_truncate, _flip_chunk, _garbage_header], ids=["truncated", "flipped", "header"]
)
@pytest.mark.parametrize("command", ["collect", "fit-predictor"])
def test_damaged_store_is_refused_and_left_alone(
    tmp_path: Path, good_workspace: Path, fast, cli, tree_snapshot, damage, command
):
    ws = tmp_path / "w"
    shutil.copytree(good_workspace, ws)
    damage(ws / "samples.h5")
    before = tree_snapshot(ws)
    args = ["--samples", "4", *fast] if command == "collect" else []
    out = cli(command, "--workdir", str(ws), *args)
    err = out.stderr.strip()
    print(f"\n| {damage.__name__} store, {command} | {err} | {out.returncode} |")  # with -s
    assert out.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "samples.h5" in err and "not a readable seernet sample store" in err, err
    assert tree_snapshot(ws) == before
