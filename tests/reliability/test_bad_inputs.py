"""Bad input -> exit code 2, one line on stderr, no traceback, nothing written or overwritten.

One table, each case run as a subprocess of the real CLI. The README's table of bad
inputs is this table; keep the two in step.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch


@dataclass(frozen=True)
class Case:
    """A bad invocation: ``{ws}``, ``{other}``, ``{data}``, ``{tmp}`` and ``{run}`` get filled in."""

    name: str
    args: str
    needle: str  # a phrase the one-line message must contain


CASES = [
    Case("unknown model", "collect --workdir {tmp}/new --model resnet99 --data-dir {data}", "unknown model 'resnet99'"),
    Case("missing data dir", "collect --workdir {tmp}/new --data-dir {tmp}/no-such-dir --samples 1", "no-such-dir"),
    Case("budget unit of another kind", "solve --workdir {ws} --flops 150MB", "unknown unit"),
    Case("negative budget", "solve --workdir {ws} --flops -1", "not a budget"),
    Case("zero budget", "solve --workdir {ws} --flops 0", "positive"),
    Case("budget that is not a number", "solve --workdir {ws} --flops abc", "not a budget"),
    Case("budget below the smallest model", "solve --workdir {ws} --flops 1K", "smallest model"),
    Case("predictor of another space", "solve --workdir {other} --flops 50%", "rerun 'seernet fit-predictor'"),
    # --max-prune 0.25 matches the workspace's space, so the store's own fingerprint is what is refused.
    Case("store of another space", "collect --workdir {other_store} --samples 3 --max-prune 0.25", "holds samples of policy space"),
    Case("policy JSON with invalid bits", "compress {tmp}/bad-bits.json --workdir {ws} --steps 1", "bits"),
    Case("checkpoint that is not a state dict", "collect --workdir {tmp}/new {run_no_weights} --weights {tmp}/list.pt --samples 1", "state dict"),
    Case("checkpoint that is not a checkpoint", "collect --workdir {tmp}/new {run_no_weights} --weights {tmp}/junk.pt --samples 1", "checkpoint"),
    Case("--samples 0", "collect --workdir {tmp}/new {run} --samples 0", "--samples must be at least 1"),
    Case("workdir that is a file", "collect --workdir {tmp}/file --samples 1", "is a file"),
    Case("unknown criterion", "collect --workdir {tmp}/new {run} --samples 1 --criterion nosuch", "unknown importance criterion"),
    Case("learned criterion not learned yet", "collect --workdir {tmp}/new {run} --samples 1 --criterion legr", "seernet legr"),
    Case("--workers 0", "collect --workdir {tmp}/new {run} --samples 1 --workers 0", "--workers must be at least 1"),
]  # fmt: skip


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, run_args: list[str], fill) -> Path:
    """A workspace with samples, a predictor and a solved policy."""
    from seernet.cli.main import main

    ws = tmp_path_factory.mktemp("fitted") / "w"
    fill(ws, run_args, 10)
    assert main(["fit-predictor", "--workdir", str(ws), "--folds", "2"]) == 0
    assert main(["solve", "--workdir", str(ws), "--flops", "50%"]) == 0
    return ws


@pytest.fixture(scope="module")
def other_space(tmp_path_factory, run_args: list[str], fill) -> Path:
    """A workspace of the same model with another policy space (another --max-prune)."""
    ws = tmp_path_factory.mktemp("other") / "w"
    fill(ws, run_args, 1, "--max-prune", "0.25")
    return ws


@pytest.fixture
def scene(tmp_path: Path, fitted: Path, other_space: Path, run_args: list[str]) -> dict[str, str]:
    """The files every case refers to, in a fresh folder; returns the placeholders."""
    other = tmp_path / "other"
    shutil.copytree(other_space, other)
    shutil.copy(fitted / "predictor.pt", other / "predictor.pt")  # fitted for the other space
    other_store = tmp_path / "other-store"
    shutil.copytree(other_space, other_store)
    shutil.copy(fitted / "samples.h5", other_store / "samples.h5")
    doc = json.loads(next((fitted / "policies").glob("*.json")).read_text())
    layer = next(iter(doc["policy"]["bits"]))
    doc["policy"]["bits"][layer] = [7, 8]  # hand-edited to a bit-width the space lacks
    (tmp_path / "bad-bits.json").write_text(json.dumps(doc))
    torch.save([1, 2, 3], tmp_path / "list.pt")
    (tmp_path / "junk.pt").write_bytes(b"this is not a checkpoint\n" * 10)
    (tmp_path / "file").write_text("a file, not a folder\n")
    no_weights = " ".join(run_args[:4])  # --data-dir D --val-size N
    return {"ws": str(fitted), "other": str(other), "other_store": str(other_store), "tmp": str(tmp_path),
            "data": run_args[1], "run": " ".join(run_args), "run_no_weights": no_weights}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(
    case: Case, scene: dict[str, str], fitted: Path, cli, tree_snapshot, tmp_path: Path
):
    before = tree_snapshot(tmp_path), tree_snapshot(fitted)
    out = cli(*case.args.format(**scene).split())
    err = out.stderr.strip()
    print(
        f"\n| {case.name} | `seernet {case.args}` | {err} | {out.returncode} |"
    )  # the README table, with -s
    assert out.returncode == 2, (out.returncode, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert case.needle in err, err
    assert (tree_snapshot(tmp_path), tree_snapshot(fitted)) == before, (
        "a bad input wrote or changed files"
    )
