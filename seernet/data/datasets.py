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
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from seernet.data.loaders import as_tensors
from seernet.data.task import CLASSIFICATION, Task
from seernet.errors import UserError
from seernet.plugins import call_plugin, is_plugin, refuse_python_object

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
    num_classes: int  # 0 when the targets are not class indices (a user's own task)
    in_channels: int
    image_size: int  # the height, for a non-square input (``shape`` has both)
    task: Task = CLASSIFICATION  # how a model is scored and fine-tuned on these splits
    augment: bool = True  # random shift + flip when training (built-in image datasets only)
    shape: tuple[int, ...] | None = None  # one input's shape, (C, H, W); None: square image_size

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of a batch of one input."""
        return (1, *(self.shape or (self.in_channels, self.image_size, self.image_size)))


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
    refuse_python_object(name, "data")
    if is_plugin(name):
        return plugin_splits(name, call_plugin(name, "data"))
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


def user_splits(
    train: Dataset | DataLoader, val: Dataset | DataLoader, test: Dataset | DataLoader | None = None,
    name: str = "user data", num_classes: int | None = None,
) -> DataSplits:  # fmt: skip
    """A user's own splits: Datasets of ``(input, target)`` (a DataLoader gives its dataset).

    Used as given: no augmentation, no re-split. Without ``test``, final reports score ``val``.
    ``num_classes`` (for a registry model's classifier) defaults to the largest integer target
    in ``val`` + 1, or 0 when targets are not class indices.
    """
    train, val = _as_dataset(train, "train", name), _as_dataset(val, "val", name)
    test = val if test is None else _as_dataset(test, "test", name)
    x = _first_input(val, name)
    for split, ds in (("train", train), ("val", val), ("test", test)):
        _check_input_sizes(ds, split, name, tuple(x.shape))
    classes = _class_count(val) if num_classes is None else int(num_classes)
    return DataSplits(name=name, train=train, val=val, test=test, num_classes=classes, in_channels=x.shape[0],
                      image_size=x.shape[1], augment=False, shape=tuple(x.shape))  # fmt: skip


def plugin_splits(spec: str, data: object) -> DataSplits:
    """The splits a ``--data FILE.py:CALLABLE`` plug-in returned (a dict of Datasets)."""
    if not isinstance(data, dict) or not {"train", "val"} <= data.keys():
        raise UserError(
            f"{spec} must return a dict with 'train' and 'val' (optionally 'test') Datasets, "
            f"got {type(data).__name__}"
            + (f" with keys {sorted(data)}" if isinstance(data, dict) else "")
        )
    return user_splits(data["train"], data["val"], data.get("test"), spec, data.get("num_classes"))


def _as_dataset(data: object, split: str, name: str) -> Dataset:
    data = data.dataset if isinstance(data, DataLoader) else data
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise UserError(
            f"{name}: {split} must be a torch Dataset (or DataLoader), got {type(data).__name__}"
        )
    if len(data) == 0:
        raise UserError(f"{name}: the {split} split is empty")
    return data


def _first_input(ds: Dataset, name: str) -> torch.Tensor:
    item = ds[0]
    if (
        not isinstance(item, (tuple, list))
        or len(item) != 2
        or not isinstance(item[0], torch.Tensor)
    ):
        raise UserError(f"{name}: every item must be an (input tensor, target) pair")
    if item[0].ndim != 3:
        raise UserError(
            f"{name}: inputs must be (channels, height, width) tensors, got shape {tuple(item[0].shape)}"
        )
    return item[0]


SIZE_SCAN = 32  # items, spread over a split, whose input shapes are compared up front


def _check_input_sizes(ds: Dataset, split: str, name: str, shape: tuple[int, ...]) -> None:
    """Inputs of one size: batches stack them (a sample of items is read; the loader's
    collate says so too for any it missed)."""
    if as_tensors(ds) is not None:
        return  # one tensor: one size
    for i in sorted({round(k * (len(ds) - 1) / (SIZE_SCAN - 1)) for k in range(SIZE_SCAN)}):
        got = tuple(ds[i][0].shape)
        if got != shape:
            raise UserError(
                f"{name}: inputs of mixed sizes ({shape} at val item 0, {got} at {split} item {i}): "
                "resize them to one size in your Dataset"
            )


CLASS_SCAN = 20_000  # targets read to count classes (a bigger val split is only sampled)


def _class_count(ds: Dataset) -> int:
    tensors = as_tensors(ds)
    if tensors is not None:
        ys = tensors[1][:CLASS_SCAN]
    else:
        ys = [ds[i][1] for i in range(min(len(ds), CLASS_SCAN))]
        if not all(isinstance(y, int) or (isinstance(y, torch.Tensor) and y.ndim == 0) for y in ys):
            return 0
        ys = torch.as_tensor([int(y) for y in ys])
    if ys.ndim != 1 or ys.is_floating_point() or ys.numel() == 0 or int(ys.min()) < 0:
        return 0
    return int(ys.max()) + 1


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
