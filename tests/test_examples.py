"""The examples run as users run them (in their quick mode): own CNN through Python, through
the CLI plug-ins, and a segmentation task with its own metric and loss."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from seernet.cli.main import main as cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUICK = ["--finetune-steps", "0", "--bn-batches", "1"]


def load(name: str):  # the example as a module
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_own_model_through_python(tmp_path: Path, capsys):
    load("own_model").main(str(tmp_path / "run"), samples=12, quick=True)
    out = capsys.readouterr().out
    metrics = json.loads(next((tmp_path / "run" / "compressed").glob("*/metrics.json")).read_text())
    assert "compressed:" in out and metrics["accuracy"]["after_finetune"]["test"] > 50  # 4 classes
    assert metrics["costs"]["flops"] <= 0.5 * metrics["unpruned"]["flops"]
    config = json.loads((tmp_path / "run" / "seernet.json").read_text())
    assert config["model"].endswith("SmallNet (Python object)")


def test_own_model_through_cli_plugins(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(EXAMPLES.parent)  # relative plug-in paths, as in the README
    ws = str(tmp_path / "cli")
    plug = [
        "--model",
        "examples/own_model.py:build_model",
        "--data",
        "examples/own_model.py:build_data",
    ]
    assert (
        cli(["collect", "--workdir", ws, *plug, "--samples", "12", *QUICK, "--workers", "2"]) == 0
    )
    config = json.loads(Path(ws, "seernet.json").read_text())
    assert config["model"] == f"{EXAMPLES / 'own_model.py'}:build_model"  # recorded absolute
    monkeypatch.chdir(tmp_path)  # later steps re-import the plug-ins from the record alone
    assert cli(["fit-predictor", "--workdir", ws, "--folds", "2"]) == 0
    capsys.readouterr()
    assert cli(["solve", "--workdir", ws, "--flops", "60%", "--bits", "8", "--json"]) == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert doc["costs"]["flops"] <= doc["budgets"]["flops"]
    assert (
        cli(["compress", doc["path"], "--workdir", ws, "--steps", "3", "--latency-runs", "2"]) == 0
    )
    assert Path(ws, "compressed", doc["name"], "model.qdq.onnx").is_file()


@pytest.mark.parametrize("samples", [12])
def test_segmentation_with_its_own_metric_and_loss(tmp_path: Path, samples: int, capsys):
    load("segmentation").main(str(tmp_path / "seg"), samples=samples, quick=True)
    metrics = json.loads(next((tmp_path / "seg" / "compressed").glob("*/metrics.json")).read_text())
    assert metrics["accuracy"]["after_finetune"]["test"] > 60  # mean IoU %, 2 classes
    assert metrics["onnxruntime"] is None or "top1_agreement" not in metrics["onnxruntime"]
    assert "test mean IoU" in capsys.readouterr().out


def test_the_readme_example_runs_as_written(tmp_path: Path, monkeypatch, capsys):
    """The README's "Your own model" code, as printed, with this suite's quick measurement and
    fine-tuning settings put in as defaults (as written it takes minutes)."""
    from seernet.api import workflow
    from seernet.compression.protocol import Protocol
    from seernet.steps.compress import CompressSettings

    readme = (EXAMPLES.parent / "README.md").read_text()
    code = readme.split("## Your own model", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    collect, compress = workflow.collect_samples, workflow.compress_policy
    monkeypatch.setattr(workflow, "collect_samples", lambda ctx, n, protocol=None, *a: collect(
        ctx, 12, protocol or Protocol(finetune_steps=0, bn_batches=1), *a))  # fmt: skip
    monkeypatch.setattr(workflow, "compress_policy", lambda ctx, p, s=None: compress(
        ctx, p, s or CompressSettings(steps=40, latency_runs=2)))  # fmt: skip
    monkeypatch.chdir(EXAMPLES.parent)
    exec(compile(code.replace('"my-run"', repr(str(tmp_path / "my-run"))), "README.md", "exec"), {})
    assert "'test':" in capsys.readouterr().out
    assert next((tmp_path / "my-run" / "compressed").glob("*/model.qdq.onnx")).is_file()
