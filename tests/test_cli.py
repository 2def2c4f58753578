"""The console script: help, bad input -> exit code 2 and one line, import hygiene."""

import subprocess
import sys
from pathlib import Path

import pytest

from seernet.cli.main import main
from seernet.models import create_model
from seernet.workspace.checkpoint import save_checkpoint


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seernet.cli.main", *args], capture_output=True, text=True
    )


def test_help_lists_working_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    assert "pretrain" in out.stdout and "MACs" in out.stdout


def test_import_is_quick_and_touches_no_gpu():
    # What makes an import slow is the heavy packages it pulls in, not this machine's speed:
    # check that none is imported (and without torch, CUDA cannot be initialised).
    heavy = ("torch", "torchvision", "numpy", "scipy", "sklearn", "matplotlib", "h5py", "deap")
    code = (
        "import sys; import seernet, seernet.cli.main; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules) or '-')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "-"


def test_algorithm_packages_do_not_initialise_cuda():
    code = (
        "import predictor, search.solver, search.sampler, torch; print(torch.cuda.is_initialized())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _assert_one_line_error(capsys: pytest.CaptureFixture, code: int, needle: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert needle in err


def test_unknown_model(tmp_path: Path, fake_fmnist: Path, capsys):
    code = main(
        [
            "evaluate",
            "--workdir",
            str(tmp_path / "w"),
            "--model",
            "resnet99",
            "--data-dir",
            str(fake_fmnist),
        ]
    )
    _assert_one_line_error(capsys, code, "unknown model")


def test_missing_data_dir(tmp_path: Path, capsys):
    code = main(
        ["evaluate", "--workdir", str(tmp_path / "w"), "--data-dir", str(tmp_path / "missing")]
    )
    _assert_one_line_error(capsys, code, "dataset-fashion-mnist")


def test_checkpoint_of_another_architecture(tmp_path: Path, fake_fmnist: Path, capsys):
    save_checkpoint(tmp_path / "vgg.pt", create_model("vgg_small", 10, 1), {"model": "vgg_small"})
    args = [
        "evaluate",
        "--workdir",
        str(tmp_path / "w"),
        "--data-dir",
        str(fake_fmnist),
        "--val-size",
        "100",
        "--weights",
        str(tmp_path / "vgg.pt"),
    ]
    _assert_one_line_error(capsys, main(args), "vgg_small")


def test_workdir_that_is_a_file(tmp_path: Path, capsys):
    (tmp_path / "f").write_text("x")
    _assert_one_line_error(
        capsys, main(["evaluate", "--workdir", str(tmp_path / "f")]), "is a file"
    )


def test_workspace_refuses_another_model(tmp_path: Path, fake_fmnist: Path, capsys):
    ws = str(tmp_path / "w")
    main(
        [
            "pretrain",
            "--workdir",
            ws,
            "--data-dir",
            str(fake_fmnist),
            "--epochs",
            "1",
            "--val-size",
            "100",
        ]
    )
    capsys.readouterr()
    _assert_one_line_error(
        capsys, main(["evaluate", "--workdir", ws, "--model", "vgg_small"]), "made for model"
    )


def test_pretrain_then_evaluate_on_tiny_data(tmp_path: Path, fake_fmnist: Path, capsys):
    ws = str(tmp_path / "w")
    args = ["--workdir", ws, "--data-dir", str(fake_fmnist), "--val-size", "100"]
    assert main(["pretrain", *args, "--epochs", "2", "--lr", "0.05"]) == 0
    assert (tmp_path / "w" / "base.pt").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--workdir", ws, "--json"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["flops"] > 0 and 0.0 <= result["test_accuracy"] <= 100.0


@pytest.mark.parametrize("fraction", ["0", "1.5"])
def test_collect_refuses_a_warmup_fraction_outside_0_1(tmp_path: Path, fraction: str, capsys):
    code = main(
        [
            "collect",
            "--workdir",
            str(tmp_path / "w"),
            "--samples",
            "5",
            "--warmup-fraction",
            fraction,
        ]
    )
    _assert_one_line_error(capsys, code, "warmup_fraction")
    assert not (tmp_path / "w").exists()
