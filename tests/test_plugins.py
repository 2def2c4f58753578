"""Plug-ins and the user's own data, metric and output layer: what works, and the one-line
errors for what does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from seernet.cli.main import main as cli
from seernet.data.datasets import user_splits
from seernet.data.task import Task
from seernet.errors import UserError
from seernet.plugins import is_plugin, load_callable, normalized, object_name
from seernet.space.graph import build_space, output_layer

PLUGIN = """
import torch
from torch import nn
from torch.utils.data import TensorDataset

def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

def not_a_model():
    return 42

def data():
    x = torch.randn(40, 1, 8, 8)
    return {"train": TensorDataset(x, torch.arange(40) % 3), "val": TensorDataset(x[:20], torch.arange(20) % 3)}

def wrong_data():
    return [1, 2]

def broken():
    raise RuntimeError("boom")

def no_val():
    x = torch.randn(40, 1, 8, 8)
    return {"train": TensorDataset(x, torch.arange(40) % 3)}

class Mixed(torch.utils.data.Dataset):
    def __len__(self):
        return 20

    def __getitem__(self, i):
        return torch.randn(1, 8 + i % 2, 8), i % 3

def mixed_sizes():
    return {"train": Mixed(), "val": Mixed()}

def nan_metric(model, batches):
    return float("nan")

def raising_metric(model, batches):
    raise KeyError("score")
"""


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "mine.py"
    path.write_text(PLUGIN)
    return path


def test_plugin_specs_are_recognised_and_recorded_absolute(plugin: Path, monkeypatch):
    monkeypatch.chdir(plugin.parent)
    assert (
        is_plugin("mine.py:build_model") and is_plugin("pkg.mod:fn") and not is_plugin("resnet20")
    )
    assert normalized("mine.py:build_model") == f"{plugin}:build_model"
    assert isinstance(load_callable("mine.py:build_model")(), nn.Module)
    assert load_callable("math:sqrt")(4.0) == 2.0  # package.module:CALLABLE


@pytest.mark.parametrize(
    ("spec", "message"),
    [("mine.py:nothing", "no callable 'nothing'"), ("missing.py:f", "does not exist"),
     ("no_such_module_xyz:f", "cannot import"), ("mine.py", "not a plug-in")],
)  # fmt: skip
def test_bad_plugin_specs_are_one_line_errors(plugin: Path, monkeypatch, spec: str, message: str):
    monkeypatch.chdir(plugin.parent)
    with pytest.raises(UserError, match=message):
        load_callable(spec) if is_plugin(spec) else normalized(spec)


def test_objects_are_recorded_by_name_without_their_module():
    class Net(nn.Module):
        pass

    assert object_name(Net()).endswith("Net (Python object)")
    assert not is_plugin(object_name(Net()))


def test_user_splits_take_datasets_or_loaders_and_count_classes():
    x, y = torch.randn(20, 3, 8, 12), torch.arange(20) % 5
    s = user_splits(DataLoader(TensorDataset(x, y), batch_size=4), TensorDataset(x, y))
    assert (s.num_classes, s.input_shape, s.augment) == (5, (1, 3, 8, 12), False)
    assert s.test is s.val  # no test split: reports score val
    masks = user_splits(
        TensorDataset(x, torch.zeros(20, 8, 12, dtype=torch.long)), TensorDataset(x, x[:, 0])
    )
    assert masks.num_classes == 0  # targets are not class indices


@pytest.mark.parametrize(
    ("val", "message"),
    [(TensorDataset(torch.randn(0, 1, 4, 4), torch.zeros(0)), "empty"),
     (TensorDataset(torch.randn(4, 16), torch.zeros(4)), "channels, height, width"), ([1, 2], "pair")],
)  # fmt: skip
def test_unusable_data_is_refused(val, message: str):
    with pytest.raises(UserError, match=message):
        user_splits(TensorDataset(torch.randn(4, 1, 4, 4), torch.zeros(4)), val)


def test_a_custom_metric_scores_batches_on_the_device_and_must_be_finite():
    data = TensorDataset(torch.randn(10, 1, 4, 4), torch.ones(10))
    model = nn.Sequential(nn.Conv2d(1, 1, 1))
    seen = []

    def count(m, batches):
        seen.extend(len(y) for _, y in batches)
        return 7

    assert Task(metric=count).score(model, data, torch.device("cpu"), batch_size=4) == 7.0
    assert seen == [4, 4, 2]
    with pytest.raises(UserError, match="finite"):
        Task(metric=lambda m, b: float("nan")).score(model, data, torch.device("cpu"))


def test_the_output_layer_is_found_from_the_forward_pass_and_kept_whole():
    class Fcn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.bn, self.b = (
                nn.Conv2d(1, 8, 3, padding=1),
                nn.BatchNorm2d(8),
                nn.Conv2d(8, 8, 3, padding=1),
            )
            self.head = nn.Conv2d(8, 2, 1)  # defined last but one below; runs last
            self.unused = nn.Linear(4, 4)

        def forward(self, x):
            return self.head(self.b(torch.relu(self.bn(self.a(x)))))

    model = Fcn().eval()
    assert output_layer(model, torch.zeros(1, 1, 8, 10)) == "head"
    space = build_space(model, (1, 1, 8, 10))
    assert "head" not in {g.name for g in space.groups} and {"a", "b"} <= {
        g.name for g in space.groups
    }


def run(args: list[str], capsys) -> tuple[int, str]:
    code = cli(args)
    return code, capsys.readouterr().err.strip()


def test_cli_plugin_errors_are_one_line_and_leave_no_workspace(
    plugin: Path, tmp_path: Path, capsys
):
    ws = tmp_path / "ws"
    base = ["collect", "--workdir", str(ws), "--samples", "2"]
    cases = [
        (
            ["--model", f"{plugin}:not_a_model", "--data", f"{plugin}:data"],
            "must return a torch.nn.Module",
        ),
        (
            ["--model", f"{plugin}:build_model", "--data", f"{plugin}:wrong_data"],
            "must return a dict",
        ),
        (["--model", f"{plugin}:broken"], "failed while building the model: RuntimeError: boom"),
        (["--data", f"{plugin}:wrong_data", "--dataset", "cifar10"], "not both"),
        (["--metric", "resnet20"], "FILE.py:CALLABLE"),
        (["--model", f"{plugin.parent / 'bad_syntax.py'}:f"], "SyntaxError"),
        (["--model", f"{plugin}:build_model", "--data", f"{plugin}:no_val"], "'val'"),
        (["--model", f"{plugin}:build_model", "--data", f"{plugin}:mixed_sizes"], "size"),
        (
            [
                "--model",
                f"{plugin}:build_model",
                "--data",
                f"{plugin}:data",
                "--metric",
                f"{plugin}:nan_metric",
            ],
            "finite",
        ),
        (
            [
                "--model",
                f"{plugin}:build_model",
                "--data",
                f"{plugin}:data",
                "--metric",
                f"{plugin}:raising_metric",
            ],
            "the metric raised KeyError",
        ),
    ]
    (plugin.parent / "bad_syntax.py").write_text("def f(:\n")
    for extra, message in cases:
        code, err = run([*base, *extra], capsys)
        assert code == 2 and message in err and len(err.splitlines()) == 1, err
        assert not ws.exists()


def test_a_python_object_workspace_tells_the_cli_where_to_continue(tmp_path: Path, capsys):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "seernet.json").write_text(json.dumps({"model": "Net (Python object)", "dataset": "fashion-mnist",
                                                 "space": {"choices": {}, "input_shape": [1, 1, 8, 8], "num_classes": 10}}))  # fmt: skip
    code, err = run(["collect", "--workdir", str(ws), "--samples", "1"], capsys)
    assert code == 2 and "seernet.Compressor" in err


def test_what_the_space_leaves_alone_is_said_when_it_is_fixed(tmp_path: Path, capsys):
    from torchvision.models import shufflenet_v2_x0_5

    import seernet

    data = TensorDataset(torch.randn(4, 3, 64, 64), torch.arange(4))
    model = shufflenet_v2_x0_5(weights=None, num_classes=4).eval()
    space = seernet.Compressor(model, data, data, workdir=tmp_path / "w").context.space
    assert space.notes  # the channels around the channel shuffle are kept
    assert capsys.readouterr().err.count("note: ") == len(space.notes)
