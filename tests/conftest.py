"""Shared fixtures: a tiny Fashion-MNIST-format dataset written to disk (no real data needed)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as a gzipped idx file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_fake_fmnist(root: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """Learnable toy data in Fashion-MNIST's file format: the class sets a bright stripe."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, :] = 250
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture(scope="session")
def fake_fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_fmnist(tmp_path_factory.mktemp("fmnist"))


NO_SEERNET = """
import sys
sys.modules["seernet"] = None
import torch
model = torch.jit.load(sys.argv[1])
io = torch.load(sys.argv[2])
print((model(io["x"]) - io["y"]).abs().max().item())
"""


@pytest.fixture
def no_seernet_script() -> str:
    """A ``python -c`` script that loads a TorchScript file with seernet made unimportable."""
    return NO_SEERNET


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    """Outputs of an ONNX file: onnxruntime when installed, else onnx's reference evaluator."""
    try:
        import onnxruntime as ort
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(str(path)).run(None, {"input": x})[0]
    return ort.InferenceSession(str(path)).run(None, {"input": x})[0]


@pytest.fixture
def run_onnx():  # returns the helper
    """Outputs of an ONNX file, as a function of (path, x)."""
    return _run_onnx


@pytest.fixture(scope="session")
def run_args(tmp_path_factory: pytest.TempPathFactory, fake_fmnist: Path) -> list[str]:
    """Workspace options for a ResNet-20 with random weights on the fake data."""
    import torch

    from seernet.models import create_model
    from seernet.workspace.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    save_checkpoint(root / "w.pt", create_model("resnet20", 10, 1), {"model": "resnet20"})
    return ["--data-dir", str(fake_fmnist), "--val-size", "100", "--weights", str(root / "w.pt")]


@pytest.fixture
def make_image_folder():  # returns the helper
    """A function writing train/ and val/ with two classes of random PNGs cycling through sizes (w, h)."""

    def make(root: Path, sizes: list[tuple[int, int]], per_class: int = 3) -> Path:
        from PIL import Image

        rng = np.random.default_rng(0)
        k = 0
        for split in ("train", "val"):
            for cls in ("a", "b"):
                (root / split / cls).mkdir(parents=True)
                for i in range(per_class):
                    w, h = sizes[k % len(sizes)]
                    k += 1
                    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
                        root / split / cls / f"{i}.png"
                    )
        return root

    return make


@pytest.fixture
def cheap_hessian(monkeypatch):
    """HAWQ's sensitivities from one batch and one probe (the default 256 HVPs take minutes);
    the list records the channel counts of every Hessian taken."""
    import seernet.compression.hawq as hawq

    calls = []
    real = hawq.pruned_sensitivity

    def one_probe(model, space, train, channels, probes=1, n_batches=1):
        calls.append(channels)
        return real(model, space, train, channels, 1, 1)

    monkeypatch.setattr(hawq, "pruned_sensitivity", one_probe)
    return calls


@pytest.fixture(autouse=True)
def quick_sensitivity(monkeypatch):
    """Damage tables from the lowest level of each coordinate and one loss batch: every
    collect on a new workspace measures one, and the full table costs minutes."""
    import seernet.compression.sensitivity as sensitivity

    monkeypatch.setattr(sensitivity, "PRUNE_LEVEL_STEP", 100)
    monkeypatch.setattr(sensitivity, "BITS_LEVEL_STEP", 100)
    monkeypatch.setattr(sensitivity, "LOSS_BATCHES", 1)
