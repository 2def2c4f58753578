"""Datasets read from local files only: Fashion-MNIST (idx), CIFAR-10 (python), ImageFolder.

Every dataset yields three splits: ``train`` and ``val`` carved deterministically from
the official training set (``val`` is what policy sampling measures on), and the
official ``test`` split, kept for final reports. Nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from seernet.errors import UserError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_FMNIST_HINT = (
    "install Debian's package with 'apt-get update && apt-get install -y dataset-fashion-mnist' "
    "or pass --data-dir with the four idx files"
)


@dataclass(frozen=True)
class DataSplits:
    """Train/val/test splits plus what a model needs to know about the inputs."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int


# (data_dir, image_size or None for the dataset's own) -> (train, test, classes, channels, size)
DatasetLoader = Callable[[Path | None, int | None], tuple[Dataset, Dataset, int, int, int]]
_DATASETS: dict[str, DatasetLoader] = {}


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Decorator adding a loader ``(data_dir, image_size) -> (train, test, classes, channels, size)``."""

    def wrap(fn: DatasetLoader) -> DatasetLoader:
        _DATASETS[name] = fn
        return fn

    return wrap


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    val_size: int = 5000,
    seed: int = 0,
    image_size: int | None = None,
) -> DataSplits:
    """Load ``name`` from disk and split its training set into train/val with ``seed``.

    ``image_size`` (square side in pixels) resizes an image folder; None keeps the
    dataset's own size. Fixed-size datasets refuse any other size.
    """
    if name not in _DATASETS:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names())}")
    if image_size is not None and image_size < 8:
        raise UserError(f"--image-size must be at least 8 pixels, got {image_size}")
    train_full, test, classes, channels, size = _DATASETS[name](
        Path(data_dir) if data_dir else None, image_size
    )
    train_idx, val_idx = split_indices(len(train_full), val_size, seed)
    return DataSplits(
        name=name,
        train=Subset(train_full, train_idx.tolist()),
        val=Subset(train_full, val_idx.tolist()),
        test=test,
        num_classes=classes,
        in_channels=channels,
        image_size=size,
    )


def split_indices(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted train/val index arrays; the same ``seed`` always gives the same split."""
    if not 0 < val_size < n:
        raise UserError(
            f"--val-size must be between 1 and {n - 1} for this dataset, got {val_size}"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


# --- Fashion-MNIST ---------------------------------------------------------------------

_FMNIST_MEAN, _FMNIST_STD = 0.2860, 0.3530


def _read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (optionally gzipped): big-endian dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read {path}: {exc}; {_FMNIST_HINT}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path} is not an idx file of unsigned bytes; {_FMNIST_HINT}")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise UserError(
            f"{path} is truncated ({data.size} of {int(np.prod(dims))} bytes); {_FMNIST_HINT}"
        )
    return data.reshape(dims)


def _find_idx(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise UserError(f"Fashion-MNIST file {stem}(.gz) not found in {root}; {_FMNIST_HINT}")


def _fmnist_split(root: Path, prefix: str) -> TensorDataset:
    images = _read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
    labels = _read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"Fashion-MNIST files in {root} do not match each other; {_FMNIST_HINT}")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = (x - _FMNIST_MEAN) / _FMNIST_STD
    return TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))


@register_dataset("fashion-mnist")
def _load_fashion_mnist(
    data_dir: Path | None, image_size: int | None
) -> tuple[Dataset, Dataset, int, int, int]:
    _fixed_size("fashion-mnist", 28, image_size)
    root = data_dir or FASHION_MNIST_DIR
    if not root.is_dir():
        raise UserError(f"Fashion-MNIST folder {root} does not exist; {_FMNIST_HINT}")
    return _fmnist_split(root, "train"), _fmnist_split(root, "t10k"), 10, 1, 28


def _fixed_size(name: str, size: int, requested: int | None) -> None:
    if requested not in (None, size):
        raise UserError(
            f"{name} images are {size}x{size}; --image-size {requested} applies to --dataset imagefolder only"
        )


# --- CIFAR-10 (python version) ---------------------------------------------------------

_CIFAR_HINT = "pass --data-dir pointing at 'cifar-10-batches-py' (the python version from cs.toronto.edu/~kriz/cifar.html)"
_CIFAR_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
_CIFAR_STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


class _PlainUnpickler(pickle.Unpickler):
    """CIFAR batches are pickled dicts of bytes and arrays; refuse anything that runs code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # pickle protocol
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise UserError(f"CIFAR-10 file {path} not found; {_CIFAR_HINT}")
    try:
        with open(path, "rb") as f:
            batch = _PlainUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
        raise UserError(f"{path} is not a CIFAR-10 python batch ({exc}); {_CIFAR_HINT}") from exc
    return data, labels


def _cifar_tensors(paths: list[Path]) -> TensorDataset:
    parts = [_cifar_batch(p) for p in paths]
    x = torch.from_numpy(np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0)
    x = (x - _CIFAR_MEAN) / _CIFAR_STD
    return TensorDataset(x, torch.from_numpy(np.concatenate([p[1] for p in parts])))


@register_dataset("cifar10")
def _load_cifar10(
    data_dir: Path | None, image_size: int | None
) -> tuple[Dataset, Dataset, int, int, int]:
    _fixed_size("cifar10", 32, image_size)
    if data_dir is None:
        raise UserError(f"CIFAR-10 needs --data-dir; {_CIFAR_HINT}")
    train = _cifar_tensors([data_dir / f"data_batch_{i}" for i in range(1, 6)])
    return train, _cifar_tensors([data_dir / "test_batch"]), 10, 3, 32


# --- ImageFolder (ImageNet-style) ------------------------------------------------------

_IMAGEFOLDER_HINT = (
    "pass --data-dir with train/ and val/ subfolders, one folder per class inside each"
)


_SIZE_PROBE = 256  # images whose headers decide an image folder's own size


def common_image_size(files: list[str]) -> int | None:
    """The side of square images when an even spread of up to 256 of ``files`` share one."""
    from PIL import Image

    step = max(1, len(files) // _SIZE_PROBE)
    sizes = set()
    for path in files[::step][:_SIZE_PROBE]:
        with Image.open(path) as img:  # reads the header only
            sizes.add(img.size)
        if len(sizes) > 1:
            return None
    ((w, h),) = sizes or {(0, 1)}
    return w if w == h else None


@register_dataset("imagefolder")
def _load_imagefolder(
    data_dir: Path | None, image_size: int | None
) -> tuple[Dataset, Dataset, int, int, int]:
    """Images at ``image_size``; by default their own size when they share one, else 224."""
    from torchvision import datasets, transforms

    if data_dir is None or not (data_dir / "train").is_dir() or not (data_dir / "val").is_dir():
        raise UserError(f"ImageFolder data missing at {data_dir}; {_IMAGEFOLDER_HINT}")
    try:
        train = datasets.ImageFolder(str(data_dir / "train"))
        test = datasets.ImageFolder(str(data_dir / "val"))
    except (FileNotFoundError, RuntimeError) as exc:
        raise UserError(
            f"ImageFolder data at {data_dir} is unusable ({exc}); {_IMAGEFOLDER_HINT}"
        ) from exc
    if train.classes != test.classes:
        raise UserError(f"train/ and val/ in {data_dir} have different class folders")
    own = common_image_size([p for p, _ in train.samples])
    size = image_size or own or 224
    # ImageNet's recipe (resize to 8/7 of the side, center crop) unless the images already fit.
    resize = (
        []
        if size == own
        else [transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size)]
    )
    tf = transforms.Compose(
        [
            *resize,
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    train.transform = test.transform = tf
    return train, test, len(train.classes), 3, size
