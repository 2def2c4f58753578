"""seernet.Compressor's own contract: what it records, resumes and refuses (the full runs are
in test_examples.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import seernet
from seernet.errors import UserError

DATA = """
import torch
from torch.utils.data import TensorDataset

def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 1, 8, 8, generator=g)
    return {"train": TensorDataset(x, torch.arange(24) % 3), "val": TensorDataset(x[:12], torch.arange(12) % 3)}
"""


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()  # fmt: skip


def splits() -> tuple[TensorDataset, TensorDataset]:
    x = torch.randn(24, 1, 8, 8)
    return TensorDataset(x, torch.arange(24) % 3), TensorDataset(x[:12], torch.arange(12) % 3)


def test_a_workspace_records_objects_by_name_and_weights_by_digest(tmp_path: Path):
    job = seernet.Compressor(net(), *splits(), workdir=tmp_path / "w")
    assert 0.0 <= job.evaluate() <= 100.0
    config = json.loads((tmp_path / "w" / "seernet.json").read_text())
    assert config["model"] == "Sequential (Python object)" and config["weights"].startswith("sha1 ")
    assert config["space"]["input_shape"] == [1, 1, 8, 8]
    assert seernet.Compressor(
        net(), *splits(), workdir=tmp_path / "w"
    ).context.space  # same weights: resumes
    other = net()
    with torch.no_grad():
        other[0].weight.add_(1.0)
    with pytest.raises(UserError, match="other weights"):
        _ = seernet.Compressor(other, *splits(), workdir=tmp_path / "w").context


def test_a_data_plugin_with_a_metric_object(tmp_path: Path):
    plugin = tmp_path / "d.py"
    plugin.write_text(DATA)
    job = seernet.Compressor(
        net(), data=f"{plugin}:data", metric=lambda m, b: 42.0, workdir=tmp_path / "w"
    )
    assert job.evaluate() == 42.0
    assert job.context.splits.num_classes == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({}, "give train= and val="), ({"data": "d.py:data", "train": [1], "val": [1]}, "not both"),
     ({"data": "no-colon"}, "plug-in")],
)  # fmt: skip
def test_bad_arguments_are_one_line_errors(tmp_path: Path, kwargs: dict, message: str):
    with pytest.raises(UserError, match=message):
        seernet.Compressor(net(), workdir=tmp_path / "w", **kwargs)


def test_example_input_must_match_the_data(tmp_path: Path):
    job = seernet.Compressor(
        net(), *splits(), example_input=torch.zeros(1, 1, 9, 9), workdir=tmp_path / "w"
    )
    with pytest.raises(UserError, match="example_input"):
        _ = job.context


def test_a_budget_is_parsed_once_and_keeps_the_text_the_user_wrote(tmp_path: Path):
    from seernet.api.workflow import parse_budgets
    from seernet.steps.solve import resolve_budgets

    ctx = seernet.Compressor(net(), *splits(), workdir=tmp_path / "w").context
    [bset] = resolve_budgets(ctx, parse_budgets(flops="50%", size=["2KB"]), None, mixed=True)
    assert bset.given == {"flops": "50%", "size": "2KB"}
    assert bset.budgets["flops"] == pytest.approx(0.5 * ctx.costs.unpruned()["flops"])
    with pytest.raises(UserError, match="unknown budget"):
        parse_budgets(watts="3")
