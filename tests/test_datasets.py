from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from seernet.data.datasets import load_dataset, split_indices
from seernet.data.loaders import as_tensors, batches
from seernet.errors import UserError


def test_split_is_deterministic_and_disjoint():
    tr1, va1 = split_indices(1000, 100, seed=3)
    tr2, va2 = split_indices(1000, 100, seed=3)
    assert np.array_equal(tr1, tr2) and np.array_equal(va1, va2)
    assert len(va1) == 100 and len(tr1) == 900
    assert not set(tr1) & set(va1)
    assert set(tr1) | set(va1) == set(range(1000))
    _, va3 = split_indices(1000, 100, seed=4)
    assert not np.array_equal(va1, va3)


def test_fashion_mnist_format_loads(fake_fmnist: Path):
    splits = load_dataset("fashion-mnist", fake_fmnist, val_size=100, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (500, 100, 200)
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 1, 28)
    x, y = next(iter(batches(splits.val, 64)))
    assert x.shape == (64, 1, 28, 28) and y.dtype.is_floating_point is False


def test_missing_data_dir_is_a_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path / "nope")


def test_malformed_idx_is_a_user_error(tmp_path: Path, fake_fmnist: Path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in fake_fmnist.iterdir():
        (bad / f.name).write_bytes(
            f.read_bytes()[:50] if "train-images" in f.name else f.read_bytes()
        )
    with pytest.raises(UserError):
        load_dataset("fashion-mnist", bad)


def test_unknown_dataset_and_cifar_without_dir():
    with pytest.raises(UserError, match="known datasets"):
        load_dataset("mnist-9000")
    with pytest.raises(UserError, match="data-dir"):
        load_dataset("cifar10")


def test_cifar10_python_batches(tmp_path: Path):
    import pickle

    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, 20)],
        }
        with open(tmp_path / name, "wb") as f:
            pickle.dump(batch, f)
    splits = load_dataset("cifar10", tmp_path, val_size=10)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (90, 10, 20)
    assert splits.in_channels == 3 and splits.image_size == 32


def test_image_folder_keeps_its_own_size_by_default(tmp_path: Path, make_image_folder):
    root = make_image_folder(tmp_path / "d", [(32, 32)])
    splits = load_dataset("imagefolder", root, val_size=2)
    assert splits.image_size == 32 and splits.train[0][0].shape == (3, 32, 32)
    resized = load_dataset("imagefolder", root, val_size=2, image_size=20)
    assert resized.image_size == 20 and resized.test[0][0].shape == (3, 20, 20)


def test_image_folder_of_mixed_sizes_defaults_to_224(tmp_path: Path, make_image_folder):
    root = make_image_folder(tmp_path / "d", [(32, 32), (40, 30)])
    splits = load_dataset("imagefolder", root, val_size=2)
    assert splits.image_size == 224 and splits.val[0][0].shape == (3, 224, 224)


def test_fixed_size_datasets_refuse_another_size(fake_fmnist: Path):
    with pytest.raises(UserError, match="imagefolder only"):
        load_dataset("fashion-mnist", fake_fmnist, val_size=100, image_size=32)
    with pytest.raises(UserError, match="at least 8"):
        load_dataset("fashion-mnist", fake_fmnist, val_size=100, image_size=0)


def test_subset_tensors_are_gathered_once_and_equal_a_fresh_gather():
    x, y = torch.arange(40.0).reshape(10, 1, 2, 2), torch.arange(10)
    sub = Subset(TensorDataset(x, y), [7, 2, 5])
    first, again = as_tensors(sub), as_tensors(sub)
    assert first[0] is again[0]  # the cached gather, not a copy per call
    assert torch.equal(first[0], x[[7, 2, 5]]) and torch.equal(first[1], y[[7, 2, 5]])
    sub.indices = [1, 0]  # a Subset given new indices is gathered again
    assert torch.equal(as_tensors(sub)[1], torch.tensor([1, 0]))
