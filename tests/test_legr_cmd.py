"""``seernet legr`` on tiny data: learn once, policies compress accepts, reuse, criterion, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seernet.cli.main import main

FAST = ["--finetune-steps", "0", "--bn-batches", "1", "--val-limit", "50"]
TINY = ["--population", "2", "--sample", "1", "--evaluations", "3", *FAST]


@pytest.fixture(scope="module")
def run_args(run_args: list[str]) -> list[str]:
    return [*run_args, "--device", "cpu"]


@pytest.fixture(scope="module")
def learned(tmp_path_factory, run_args) -> tuple[Path, dict]:
    """A fresh workspace after one tiny 'seernet legr --flops 30%,50%,70%'."""
    ws = tmp_path_factory.mktemp("learned") / "w"
    capture = []
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(
            ["legr", "--workdir", str(ws), *run_args, "--flops", "30%,50%,70%", *TINY, "--json"]
        )
    capture.append(buf.getvalue())
    assert code == 0
    return ws, json.loads(capture[0])


def context(ws: Path):
    from seernet.steps.context import RunContext
    from seernet.workspace.folder import Workspace

    w = Workspace(ws)
    return RunContext(w, w.read(), torch.device("cpu"))


def test_policies_meet_budgets_and_are_valid(learned):
    from seernet.space.policy import Policy

    ws, out = learned
    ctx = context(ws)
    assert (ws / "legr.json").is_file() and out["legr"]["evaluations"] == 3
    assert len(out["policies"]) == 3
    flops = []
    for doc in out["policies"]:
        policy = Policy.from_json(json.loads(Path(doc["path"]).read_text())["policy"])
        ctx.space.validate(policy)
        assert ctx.costs.of_policy(policy)["flops"] <= doc["budgets"]["flops"]
        assert {tuple(b) for b in policy.bits.values()} == {(8, 8)}
        assert doc["space_fingerprint"] == ctx.space.fingerprint
        flops.append(doc["costs"]["flops"])
    assert flops == sorted(flops) and flops[0] < flops[-1]


def test_compress_and_report_accept_a_legr_policy(learned):
    ws, out = learned
    path = out["policies"][0]["path"]
    compress = [
        "compress",
        path,
        "--workdir",
        str(ws),
        "--steps",
        "1",
        "--latency-runs",
        "1",
        "--device",
        "cpu",
    ]
    assert (
        main([*compress, "--criterion", "l2"]) == 0
    )  # the criterion LeGR's policies are pruned with
    assert (ws / "compressed" / out["policies"][0]["name"] / "metrics.json").is_file()
    assert main(["report", "--workdir", str(ws)]) == 0  # LeGR policies carry no prediction
    assert out["policies"][0]["name"] in (ws / "report" / "summary.md").read_text()


def test_reuse_does_not_relearn(learned, monkeypatch, capsys):
    import seernet.steps.legr

    ws, out = learned
    before = (ws / "legr.json").read_text()

    def refuse(*a, **k):
        raise AssertionError("evaluated a policy although legr.json exists")

    monkeypatch.setattr(seernet.steps.legr, "evaluate_policy", refuse)
    assert main(["legr", "--workdir", str(ws), "--flops", "40%", "--bits", "4"]) == 0
    text = capsys.readouterr().out
    assert "reused" in text and "4-bit" in text
    assert (ws / "legr.json").read_text() == before
    doc = json.loads(next((ws / "policies").glob("legr_flops-*_4bit.json")).read_text())
    assert {tuple(b) for n, b in doc["policy"]["bits"].items() if b != [8, 8]} == {(4, 4)}


def test_legr_transform_orders_channels_as_the_group_norm(learned):
    # Why there is no '--criterion legr': with alpha > 0, LeGR's affine transform of the
    # normalized group norm keeps every group's channel order, so it pruned exactly as l2.
    from seernet.steps.legr import base_scores

    ws, out = learned
    ctx = context(ws)
    alpha, kappa = out["legr"]["alpha"], out["legr"]["kappa"]
    for g, s in zip(ctx.space.groups, base_scores(ctx.model, ctx.space), strict=True):
        assert alpha[g.name] > 0
        t = alpha[g.name] * s / np.linalg.norm(s) + kappa[g.name]
        assert np.array_equal(np.argsort(t, kind="stable"), np.argsort(s, kind="stable"))


def test_criterion_legr_is_refused_with_a_pointer_to_l2(learned, capsys):
    from seernet.compression.prune import prune_model
    from seernet.errors import UserError

    ws, out = learned
    ctx = context(ws)
    for resolve in (
        ctx.criterion,
        lambda name: prune_model(ctx.model, ctx.space, ctx.space.full_policy(), name),
    ):
        with pytest.raises(UserError, match="use --criterion l2"):
            resolve("legr")
    compress = [
        "compress",
        out["policies"][0]["path"],
        "--workdir",
        str(ws),
        "--steps",
        "1",
        "--device",
        "cpu",
    ]
    assert main([*compress, "--criterion", "legr"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "use --criterion l2" in err


def test_learning_is_deterministic(learned, tmp_path, run_args):
    ws, out = learned
    assert main(["legr", "--workdir", str(tmp_path / "w"), *run_args, *TINY]) == 0
    again = json.loads((tmp_path / "w" / "legr.json").read_text())
    assert again["history"] == out["legr"]["history"] and again["alpha"] == out["legr"]["alpha"]


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--flops", "1K"], "smallest model"),
        (["--flops", "abc"], "not a budget"),
        (["--flops", "50MB"], "unknown unit"),
        (["--target", "150%"], "less than 100%"),
        (["--population", "5", "--evaluations", "3"], "evaluations"),
        (["--bits", "7", "--flops", "50%"], "not one of"),
    ],
)
def test_bad_input(tmp_path, run_args, capsys, flags, needle):
    ws = tmp_path / "w"
    code = main(["legr", "--workdir", str(ws), *run_args, *TINY, *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1
    assert not (ws / "legr.json").exists() and not (ws / "policies").exists()


def test_legr_json_of_another_space_is_refused(learned, tmp_path, capsys):
    ws, _ = learned
    foreign = tmp_path / "w"
    foreign.mkdir()
    for name in ("seernet.json", "legr.json"):
        (foreign / name).write_text((ws / name).read_text())
    doc = json.loads((foreign / "legr.json").read_text())
    doc["space_fingerprint"] = "0" * 16
    (foreign / "legr.json").write_text(json.dumps(doc))
    assert main(["legr", "--workdir", str(foreign), "--flops", "50%"]) == 2
    err = capsys.readouterr().err
    assert "learned for policy space" in err and "--relearn" in err
    assert not (foreign / "policies").exists()
    assert np.isfinite(doc["best_fitness"])
