"""The memory guard: a batch that cannot fit is refused with one line before any work."""

from pathlib import Path

import pytest
import torch
from torch import nn

import seernet.memory as memory
from seernet.cli.main import main
from seernet.errors import UserError


def test_footprint_counts_outputs_and_params_by_hand():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
    )
    fp = memory.footprint(model, (1, 1, 8, 8))
    assert fp.max_output == 4 * 8 * 8 and fp.sum_outputs == 3 * 256 + 10
    assert fp.params == (4 * 9 + 4) + (256 * 10 + 10)
    assert fp.training(16) == 16 * (fp.sum_outputs + 2 * fp.max_output) * 4 + 4 * fp.params * 4
    assert fp.training(32) > fp.training(16) > fp.inference(16)


def test_a_batch_beyond_free_memory_is_refused(monkeypatch):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 224 * 224, 2))
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2 * 10**9)
    memory.check_batch_fits(model, (1, 3, 224, 224), 8, True, torch.device("cpu"))  # ~0.1 GB: fine
    with pytest.raises(
        UserError, match=r"batch 512 at 224x224 needs ~.* GB to train, this machine has 2.0 GB free"
    ):
        memory.check_batch_fits(model, (1, 3, 224, 224), 512, True, torch.device("cpu"))


def test_pretrain_on_large_images_refuses_instead_of_being_killed(
    tmp_path: Path, monkeypatch, capsys, make_image_folder
):
    data = make_image_folder(tmp_path / "d", [(32, 32)], per_class=4)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 4 * 10**9)
    args = ["pretrain", "--workdir", str(tmp_path / "w"), "--model", "vgg_small", "--dataset", "imagefolder",
            "--data-dir", str(data), "--val-size", "2", "--epochs", "1", "--device", "cpu"]  # fmt: skip
    assert main([*args, "--image-size", "224"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "batch 128 at 224x224 needs" in err and "--image-size" in err
    )
    assert not (tmp_path / "w" / "base.pt").exists()
