"""The pipeline on tiny data: collect (resume, SIGKILL), fit-predictor, solve, verify, compress, report."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seernet.cli.main import main
from seernet.workspace.store import SampleStore

FAST = ["--finetune-steps", "0", "--bn-batches", "1", "--val-limit", "50", "--strategy", "random"]


def collect(ws: Path, run_args: list[str], n: int, *extra: str) -> int:
    return main(["collect", "--workdir", str(ws), *run_args, "--samples", str(n), *FAST, *extra])


def rows(ws: Path) -> np.ndarray:
    with SampleStore.open(ws / "samples.h5") as store:
        return store.encoded


def test_collect_resumes_without_duplicates(tmp_path: Path, run_args):
    ws = tmp_path / "w"
    assert collect(ws, run_args, 3) == 0
    first = rows(ws)
    assert collect(ws, run_args, 5) == 0
    after = rows(ws)
    assert len(after) == 5 and np.array_equal(after[:3], first)
    assert len({r.tobytes() for r in after}) == 5


def test_collect_killed_with_sigkill_then_resumed(tmp_path: Path, run_args):
    ws = tmp_path / "w"
    cmd = [
        sys.executable,
        "-m",
        "seernet.cli.main",
        "collect",
        "--workdir",
        str(ws),
        *run_args,
        "--samples",
        "6",
        *FAST,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    while time.time() < deadline:
        store = ws / "samples.h5"
        if store.is_file() and len(rows(ws)) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = rows(ws)  # readable after the kill
    assert len(before) >= 2
    assert collect(ws, run_args, 6) == 0
    after = rows(ws)
    assert len(after) == 6 and np.array_equal(after[: len(before)], before)
    assert len({r.tobytes() for r in after}) == 6


def test_store_of_another_protocol_is_refused(tmp_path: Path, run_args, capsys):
    ws = tmp_path / "w"
    assert collect(ws, run_args, 1) == 0
    capsys.readouterr()
    code = main(
        ["collect", "--workdir", str(ws), "--samples", "2", *FAST[:-2], "--finetune-steps", "3"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "comparable" in err and len(err.strip().splitlines()) == 1


def test_evaluation_is_deterministic(tmp_path: Path, run_args):
    from seernet.compression.protocol import Protocol, evaluate_policy
    from seernet.space.policy import SpaceChoices
    from seernet.steps.context import RunContext, record_space
    from seernet.workspace.folder import Workspace

    ws = Workspace(tmp_path / "w")
    cfg = ws.open({"data_dir": run_args[1], "val_size": 100, "weights": run_args[5]})
    ctx = RunContext(ws, cfg, torch.device("cpu"))
    record_space(ctx, SpaceChoices())
    policy = ctx.space.decode(np.full(ctx.space.dim, 0.4))
    protocol = Protocol(bn_batches=2, finetune_steps=3, val_limit=100)
    a = evaluate_policy(ctx.model, ctx.space, policy, ctx.splits, protocol, ctx.device)[0]
    b = evaluate_policy(ctx.model, ctx.space, policy, ctx.splits, protocol, ctx.device)[0]
    assert a == b


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, run_args) -> Path:
    """A workspace with 12 samples and a fitted predictor."""
    ws = tmp_path_factory.mktemp("fitted") / "w"
    assert collect(ws, run_args, 12) == 0
    assert main(["fit-predictor", "--workdir", str(ws), "--folds", "3"]) == 0
    return ws


def test_fit_predictor_writes_predictor_and_plot(fitted: Path):
    assert (fitted / "predictor.pt").is_file() and (fitted / "report" / "predictor.png").is_file()


def test_solve_verify_compress_report(fitted: Path, capsys):
    ws = str(fitted)
    capsys.readouterr()
    assert main(["solve", "--workdir", ws, "--flops", "40%,60%", "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    for doc in docs:
        assert (
            doc["costs"]["flops"] <= doc["budgets"]["flops"]
            and doc["costs"]["bitops"] <= doc["budgets"]["bitops"]
        )
        assert Path(doc["path"]).is_file()
    assert main(["solve", "--workdir", ws, "--flops", "50%", "--bits", "8", "--json"]) == 0
    (doc8,) = json.loads(capsys.readouterr().out)
    assert {tuple(b) for b in doc8["policy"]["bits"].values()} == {(8, 8)}
    n_before = len(rows(fitted))
    assert main(["solve", "--workdir", ws, "--flops", "45%", "--verify"]) == 0
    assert len(rows(fitted)) == n_before + 1
    assert (
        main(["compress", docs[0]["path"], "--workdir", ws, "--steps", "2", "--latency-runs", "2"])
        == 0
    )
    assert (fitted / "compressed" / docs[0]["name"] / "metrics.json").is_file()
    assert main(["report", "--workdir", ws]) == 0
    assert (fitted / "report" / "pareto.png").is_file()
    with SampleStore.open(fitted / "samples.h5") as store:
        verified = store.accuracy[store.strategy == "verify"][-1]
    assert re.search(rf"\| {verified:.2f} +\|", (fitted / "report" / "summary.md").read_text())


# --bits mixed adds a BitOPs budget, so refine may make a HAWQ anchor: cheap_hessian keeps its
# Hessian to one probe (minutes otherwise); tests/test_refine.py covers the anchor itself.
def test_solve_refine_returns_the_best_measured_policy(
    fitted: Path, tmp_path: Path, capsys, cheap_hessian
):
    import shutil

    ws = tmp_path / "w"  # a copy: other tests' solves and verifies must not decide what is stored
    shutil.copytree(fitted, ws)
    before = {r.tobytes() for r in rows(ws)}
    capsys.readouterr()
    assert main(["solve", "--workdir", str(ws), "--flops", "40%", "--refine", "2", "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    m = doc["measured"]
    assert m["evaluations"] == sum(c["new"] for c in m["candidates"]) <= 2
    # Measured now unless the solver's first answer was already stored (then nothing is).
    first_known = np.asarray(m["candidates"][0]["encoded"]).tobytes() in before
    assert m["evaluations"] >= 1 or first_known
    # The answer is measured; nothing measured beats it by more than the noise margin.
    assert m["val_accuracy"] in [c["measured"] for c in m["candidates"]]
    assert max(c["measured"] for c in m["candidates"]) <= m["val_accuracy"] + m["margin"]
    assert {c["source"] for c in m["candidates"]} <= {
        "store",
        "global-ranking",
        "hawq",
        "trust-region",
        "solve",
    }
    assert doc["encoded"] in [c["encoded"] for c in m["candidates"]]
    assert doc["costs"]["flops"] <= doc["budgets"]["flops"]
    with SampleStore.open(ws / "samples.h5") as store:
        assert len(store) == len(before) + m["evaluations"]
        assert set(store.strategy[len(before) :]) <= {"refine"}
    assert json.loads(Path(doc["path"]).read_text())["measured"] == m
    # Without --json the table puts the prediction made before measuring next to the measurement.
    assert main(["solve", "--workdir", str(ws), "--flops", "40%", "--refine", "1"]) == 0
    out = capsys.readouterr().out
    assert "measured val accuracy" in out and "within 2 std" in out
    assert main(["solve", "--workdir", str(ws), "--flops", "40%"]) == 0
    assert "a prediction, not a measurement" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--flops", "150MB"], "unknown unit"),
        (["--flops", "-1"], "not a budget"),
        (["--flops", "0"], "positive"),
        (["--flops", "abc"], "not a budget"),
        (["--flops", "1K"], "smallest model"),
        (["--bits", "7", "--flops", "50%"], "not one of"),
        ([], "at least one budget"),
        (["--flops", "50%", "--refine", "0"], "--refine N needs N >= 1"),
        (["--flops", "50%", "--refine", "2", "--verify"], "drop --verify"),
    ],
)
def test_solve_bad_input(fitted: Path, capsys, flags, needle):
    code = main(["solve", "--workdir", str(fitted), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1


def test_solve_without_predictor(tmp_path: Path, run_args, capsys):
    ws = tmp_path / "w"
    assert collect(ws, run_args, 1) == 0
    capsys.readouterr()
    assert main(["solve", "--workdir", str(ws), "--flops", "50%"]) == 2
    assert "fit-predictor" in capsys.readouterr().err


def test_collect_zero_samples(tmp_path: Path, capsys):
    assert main(["collect", "--workdir", str(tmp_path / "w"), "--samples", "0"]) == 2
    assert "--samples" in capsys.readouterr().err
