"""The sample store: round trips, plain-h5py schema, refusals, and surviving kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from seernet.errors import UserError
from seernet.workspace.store import Sample, SampleStore, StoreSpec

DIM, N_CHOICES, COSTS = 6, 4, ["flops", "bitops"]
SPEC = StoreSpec(
    fingerprint="space-a",
    dim=DIM,
    n_choices=N_CHOICES,
    cost_names=COSTS,
    model="resnet20",
    dataset="fashion-mnist",
    protocol={"bn_batches": 10, "finetune_steps": 0},
    meta={"note": "x", "levels": [1, 2]},
)


def make_sample(i: int) -> Sample:
    """Row ``i`` is recognisable from every column, so a torn or shifted row shows."""
    return Sample(
        encoded=np.full(DIM, i / 10_000),
        choices=[i % 64 + 1] * N_CHOICES,
        accuracy=i / 10_000,
        costs={"flops": 1e6 + i, "bitops": 3e7 + i},
        strategy="random" if i % 2 else "uncertainty",
        round=i // 10,
        seed=i,
        seconds=0.5,
        time=1.7e9 + i,
    )


def assert_rows_are(store: SampleStore, indices: list[int]) -> None:
    assert len(store) == len(indices)
    idx = np.array(indices, dtype=np.float64)
    np.testing.assert_array_equal(store.encoded, np.repeat(idx[:, None] / 10_000, DIM, axis=1))
    np.testing.assert_array_equal(store.accuracy, idx / 10_000)
    np.testing.assert_array_equal(store.seed, idx.astype(int))
    np.testing.assert_array_equal(
        store.choices, np.repeat(idx.astype(int)[:, None] % 64 + 1, N_CHOICES, 1)
    )
    np.testing.assert_array_equal(store.costs["bitops"], 3e7 + idx)
    assert list(store.strategy) == ["random" if i % 2 else "uncertainty" for i in indices]


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    with SampleStore.create(tmp_path / "samples.h5", SPEC) as s:
        for i in range(5):
            s.append(make_sample(i))
    return tmp_path / "samples.h5"


def test_append_reopen_resume_keeps_rows_in_order(store_path: Path) -> None:
    with SampleStore.open_or_create(store_path, SPEC) as s:
        assert_rows_are(s, list(range(5)))
        for i in range(5, 8):
            s.append(make_sample(i))
    s = SampleStore.open(store_path, fingerprint="space-a")
    assert_rows_are(s, list(range(8)))
    assert s.encoded.dtype == np.float64 and s.choices.shape == (8, N_CHOICES)
    assert s.round.tolist() == [0] * 8 and s.time[3] == 1.7e9 + 3
    assert s.spec == replace(
        SPEC, meta={"note": "x", "levels": "[1, 2]"}
    )  # non-scalar meta is JSON


def test_empty_store_has_shaped_columns(tmp_path: Path) -> None:
    s = SampleStore.create(tmp_path / "s.h5", SPEC)
    assert len(s) == 0 and s.encoded.shape == (0, DIM) and s.choices.shape == (0, N_CHOICES)
    assert s.costs["flops"].shape == (0,) and s.strategy.shape == (0,)


def test_readable_with_plain_h5py_as_documented(store_path: Path) -> None:
    with h5py.File(store_path, "r") as f:
        n = f.attrs["n_committed"]
        assert n == 5 and f.attrs["format_version"] == 1
        assert f.attrs["space_fingerprint"] == "space-a" and f.attrs["model"] == "resnet20"
        assert json.loads(f.attrs["protocol"]) == SPEC.protocol
        assert json.loads(f.attrs["cost_names"]) == COSTS and f.attrs["note"] == "x"
        expected = {
            "encoded": ((n, DIM), "float64"),
            "choices": ((n, N_CHOICES), "int32"),
            "accuracy": ((n,), "float64"),
            "costs/flops": ((n,), "float64"),
            "costs/bitops": ((n,), "float64"),
            "strategy": ((n,), "|S32"),
            "round": ((n,), "int32"),
            "seed": ((n,), "int64"),
            "seconds": ((n,), "float64"),
            "time": ((n,), "float64"),
        }
        for name, (shape, dtype) in expected.items():
            assert (
                f[name].shape,
                f[name].dtype.str if name == "strategy" else str(f[name].dtype),
            ) == (shape, dtype)
            assert f[name].maxshape[0] is None
        assert f["strategy"][1] == b"random"
        np.testing.assert_array_equal(f["seed"][:n], np.arange(5))


def test_store_of_another_space_is_refused_untouched(store_path: Path) -> None:
    before = snapshot(store_path)
    with pytest.raises(UserError, match=r"space-a.*space-b.*--workdir"):
        SampleStore.open(store_path, fingerprint="space-b")
    with pytest.raises(UserError, match="space-a"):
        SampleStore.open_or_create(store_path, replace(SPEC, fingerprint="space-b"))
    with pytest.raises(UserError, match="already exists"):
        SampleStore.create(store_path, SPEC)
    assert snapshot(store_path) == before


def corrupt_chunk(path: Path) -> None:
    """Flip bytes inside the stored accuracy chunk (caught by its Fletcher-32 checksum)."""
    with h5py.File(path, "r") as f:
        offset = f["accuracy"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * 16)


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "empty", "chunk"])
def test_corrupt_file_is_refused_and_never_overwritten(store_path: Path, damage: str) -> None:
    data = store_path.read_bytes()
    if damage == "random bytes":
        store_path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "truncated":
        store_path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        store_path.write_bytes(b"")
    else:
        corrupt_chunk(store_path)
    before = snapshot(store_path)
    for attempt in (
        lambda: SampleStore.open(store_path),
        lambda: SampleStore.open_or_create(store_path, SPEC),
    ):
        with pytest.raises(
            UserError, match="not a readable seernet sample store.*untouched"
        ) as info:
            attempt()
        assert "\n" not in str(info.value)
    assert snapshot(store_path) == before


def test_bad_rows_are_refused_and_nothing_written(store_path: Path) -> None:
    s = SampleStore.open(store_path)
    before = snapshot(store_path)
    bad = {
        "dimensions": Sample(
            np.zeros(DIM + 1), [1] * N_CHOICES, 0.5, {"flops": 1, "bitops": 1}, "random"
        ),
        "raw choices": Sample(
            np.zeros(DIM), [1] * (N_CHOICES - 1), 0.5, {"flops": 1, "bitops": 1}, "random"
        ),
        "NaN": Sample(
            np.zeros(DIM), [1] * N_CHOICES, float("nan"), {"flops": 1, "bitops": 1}, "random"
        ),
    }
    for what, sample in bad.items():
        with pytest.raises(UserError, match=what):
            s.append(sample)
    with pytest.raises(ValueError, match="costs"):
        s.append(Sample(np.zeros(DIM), [1] * N_CHOICES, 0.5, {"flops": 1}, "random"))
    assert len(s) == 5 and snapshot(store_path) == before


def test_contains_and_duplicates(store_path: Path) -> None:
    s = SampleStore.open(store_path)
    assert s.contains(make_sample(3).encoded) and not s.contains(make_sample(9).encoded)
    assert s.contains(make_sample(3).encoded + 1e-12)  # the same grid point, up to float noise
    zero = make_sample(0)
    assert s.contains(-zero.encoded)  # -0.0 is 0.0
    with pytest.raises(ValueError, match="already measured"):
        s.append(make_sample(3))
    s.append(make_sample(3), allow_duplicate=True)
    assert len(SampleStore.open(store_path)) == 6


def test_one_writer_at_a_time(store_path: Path) -> None:
    first, second = SampleStore.open(store_path), SampleStore.open(store_path)
    first.append(make_sample(5))
    with pytest.raises(UserError, match="another process is writing"):
        second.append(make_sample(6))
    first.close()
    second.append(make_sample(6))  # takes the lock and sees first's row before appending
    assert_rows_are(second, list(range(7)))


def test_resume_with_another_protocol_is_refused(store_path: Path) -> None:
    before = snapshot(store_path)
    with pytest.raises(UserError, match="protocol.*--workdir"):
        SampleStore.open_or_create(store_path, replace(SPEC, protocol={"bn_batches": 20}))
    SampleStore.open_or_create(store_path, replace(SPEC, meta={})).close()  # meta is free-form
    assert snapshot(store_path) == before


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="reserved"):
        replace(SPEC, meta={"model": "other"})
    with pytest.raises(ValueError, match="cost names"):
        replace(SPEC, cost_names=["flops", "flops"])


CHILD = textwrap.dedent(
    """
    import itertools, sys, time
    sys.path.insert(0, sys.argv[2])
    from test_store import SPEC, make_sample
    from seernet.workspace.store import SampleStore

    store = SampleStore.open_or_create(sys.argv[1], SPEC)
    print("ready", flush=True)
    for i in itertools.count():
        sample = make_sample(i)
        if not store.contains(sample.encoded):
            store.append(sample)
            time.sleep(0.002)
    """
)


def test_survives_kill_9_at_random_moments(tmp_path: Path) -> None:
    path, rng = tmp_path / "samples.h5", random.Random(1234)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    counts = []
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(Path(__file__).parent)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        store = SampleStore.open(path, fingerprint="space-a")  # readable after every kill
        assert_rows_are(store, list(range(len(store))))  # every row intact, in order, no duplicates
        counts.append(len(store))
    assert counts == sorted(counts) and counts[-1] > 0
    with store:
        store.append(make_sample(counts[-1]))
    assert_rows_are(SampleStore.open(path), list(range(counts[-1] + 1)))


def test_store_of_a_newer_format_is_refused(store_path: Path) -> None:
    with h5py.File(store_path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(UserError, match="newer seernet"):
        SampleStore.open(store_path)
