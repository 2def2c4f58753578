"""The CLI's one option layer: shared options declared once, defaults from the settings
dataclasses, ValueError as the one-line user error, ``--json`` printing JSON only."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from seernet.cli.main import build_parser, main

# Commands whose options come from seernet.cli.common: every command.
SHARED = (
    "pretrain",
    "evaluate",
    "collect",
    "fit-predictor",
    "report",
    "dynamic-scores",
    "legr",
    "solve",
    "compress",
    "profile-latency",
)


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def option(p: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in p._actions if flag in a.option_strings), None)


def test_device_has_one_help_text_and_seed_one_phrasing():
    from seernet.cli.common import DEVICE_HELP

    subs = subparsers()
    helps = [option(subs[c], "--device").help for c in SHARED if option(subs[c], "--device")]
    # One text; a command may lead it with what runs on the device (solve: --verify/--refine).
    devices = {h[h.index(DEVICE_HELP) :] for h in helps if DEVICE_HELP in h}
    assert len(helps) == 8 and len(devices) == 1 and "cuda:N" in devices.pop()
    seeds = [option(subs[c], "--seed").help for c in SHARED if option(subs[c], "--seed")]
    assert len(seeds) == 7 and all(
        h.startswith("seed of ") and h.endswith("(default: %(default)s)") for h in seeds
    )


def test_defaults_come_from_the_settings_dataclasses():
    from search.legr import EvolutionConfig
    from search.sampler import SamplerConfig
    from seernet.compression.dynamic_criterion import DynamicSettings
    from seernet.compression.protocol import Protocol
    from seernet.latency.table import ProfileSettings
    from seernet.steps.backends import BackendConfig
    from seernet.steps.compress import CompressSettings
    from seernet.steps.pretrain import PretrainSettings

    subs = subparsers()
    expect = {
        ("collect", "--batch-size"): SamplerConfig().batch_size,
        ("collect", "--warmup-fraction"): SamplerConfig().warmup_fraction,
        ("collect", "--strategy"): SamplerConfig().strategy,
        ("collect", "--seed"): SamplerConfig().seed,
        ("collect", "--cpus-per-task"): BackendConfig().cpus_per_task,
        ("collect", "--max-retries"): BackendConfig().max_retries,
        ("collect", "--finetune-steps"): Protocol().finetune_steps,
        ("collect", "--criterion"): Protocol().criterion,
        ("legr", "--evaluations"): EvolutionConfig().evaluations,
        ("pretrain", "--lr"): PretrainSettings().lr,
        ("dynamic-scores", "--steps"): DynamicSettings().steps,
        ("compress", "--lr"): CompressSettings().lr,
        ("compress", "--seed"): CompressSettings().seed,
        ("compress", "--latency-runs"): CompressSettings().latency_runs,
        ("compress", "--distill"): CompressSettings().distill,
        ("compress", "--lsq"): CompressSettings().lsq,
        ("profile-latency", "--model-runs"): ProfileSettings().model_runs,
        ("profile-latency", "--runtime"): ProfileSettings().runtime,
    }
    for (cmd, flag), value in expect.items():
        assert option(subs[cmd], flag).default == value, (cmd, flag)
    # no help text of these commands spells out a number that %(default)s would print
    for cmd in SHARED:
        for a in subs[cmd]._actions:
            if (
                a.default not in (None, False, argparse.SUPPRESS)
                and a.help
                and isinstance(a.default, (int, float))
            ):
                assert f"(default: {a.default})" not in a.help, (cmd, a.option_strings)


def one_line_error(capsys, code: int, needle: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_settings_value_errors_are_one_line_user_errors(tmp_path: Path, capsys):
    one_line_error(
        capsys, main(["pretrain", "--workdir", str(tmp_path / "w"), "--epochs", "0"]), "epochs"
    )
    one_line_error(
        capsys, main(["dynamic-scores", "--workdir", str(tmp_path / "w"), "--lr", "0"]), "lr > 0"
    )
    assert not (tmp_path / "w").exists()


@pytest.fixture(scope="module")
def json_runs(tmp_path_factory, fake_fmnist: Path) -> dict[str, tuple[str, str]]:
    """stdout and stderr of every command run with --json on one tiny workspace."""
    import contextlib
    import io

    ws = str(tmp_path_factory.mktemp("json") / "w")
    fast = [
        "--finetune-steps",
        "0",
        "--bn-batches",
        "1",
        "--val-limit",
        "50",
        "--strategy",
        "random",
    ]
    commands = {
        "pretrain": [
            "pretrain",
            "--workdir",
            ws,
            "--data-dir",
            str(fake_fmnist),
            "--val-size",
            "100",
            "--epochs",
            "1",
        ],
        "collect": ["collect", "--workdir", ws, "--samples", "12", *fast],
        "fit-predictor": ["fit-predictor", "--workdir", ws, "--folds", "2"],
        "dynamic-scores": ["dynamic-scores", "--workdir", ws, "--steps", "1", "--batch-size", "8"],
        "solve": ["solve", "--workdir", ws, "--flops", "50%"],
        "compress": ["--workdir", ws, "--steps", "2", "--latency-runs", "2"],
        "report": ["report", "--workdir", ws],
    }
    out = {}
    for name, argv in commands.items():
        if name == "compress":  # the policy file solve just wrote
            argv = ["compress", json.loads(out["solve"][0])[0]["path"], *argv]
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main([*argv, "--json"])
        assert code == 0, (name, stderr.getvalue()[-2000:])
        out[name] = (stdout.getvalue(), stderr.getvalue())
    return out


@pytest.mark.parametrize(
    "command", ["pretrain", "collect", "fit-predictor", "dynamic-scores", "compress", "report"]
)
def test_json_prints_json_only(json_runs, command):
    stdout, _ = json_runs[command]
    doc = json.loads(stdout)  # the whole of stdout is one JSON document
    key = {"pretrain": "test_accuracy", "collect": "accuracy", "fit-predictor": "cv", "dynamic-scores": "channels",
           "compress": "accuracy", "report": "rows"}[command]  # fmt: skip
    assert key in doc


def test_compress_json_is_its_metrics_and_progress_goes_to_stderr(json_runs):
    stdout, stderr = json_runs["compress"]
    doc = json.loads(stdout)
    assert doc == json.loads((Path(doc["folder"]) / "metrics.json").read_text())
    assert doc["finetune_steps"] == 2
    assert "QAT fine-tune" in stderr and "val accuracy" in stderr  # progress and notes


def test_collect_json_and_eta(json_runs):
    stdout, stderr = json_runs["collect"]
    doc = json.loads(stdout)
    assert doc["samples"] == 12 and doc["accuracy"]["min"] <= doc["accuracy"]["max"]
    assert "s per sample; 11 more to go: ETA" in stderr


def test_eta_line_scales_with_workers():
    from seernet.steps.collect import eta_line

    assert eta_line(2.0, 30) == "measured 2.0 s per sample; 30 more to go: ETA 60 s"
    assert eta_line(185.0, 499, 4).endswith("ETA 6.4 h with 4 in parallel")
