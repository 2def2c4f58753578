"""Your own CNN and in-memory data, compressed with seernet: through Python or the CLI.

    python examples/own_model.py --workdir my-run           # the Python API, end to end
    seernet collect --workdir my-run-cli --model examples/own_model.py:build_model \
        --data examples/own_model.py:build_data --samples 24  # the same model, as CLI plug-ins

The model is a small CNN trained here in a few seconds on generated 16x16 images (the
class is which of four shapes is drawn), so the example needs no download.
"""

from __future__ import annotations

import argparse
import functools

import torch
from torch import nn
from torch.utils.data import TensorDataset


class SmallNet(nn.Module):
    """Conv-BN-ReLU blocks, a residual add, global pooling and a linear classifier."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.block = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.down = nn.Sequential(
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU()
        )
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.block(x)
        x = self.down(x).mean((2, 3))
        return self.head(x)


PATTERNS = (  # the class is which shape is drawn, anywhere in the image
    torch.tensor([[1.0] * 6]),  # horizontal bar
    torch.tensor([[1.0]] * 6),  # vertical bar
    torch.ones(3, 3),  # square
    torch.tensor([[0.0, 1, 0], [1, 1, 1], [0, 1, 0]]),  # plus
)


def shapes(n: int, seed: int) -> TensorDataset:
    """Noise images with one bright shape at a random place; the shape is the label."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 16, 16, generator=g) * 0.5
    y = torch.randint(0, len(PATTERNS), (n,), generator=g)
    for i in range(n):
        p = PATTERNS[int(y[i])]
        r, c = (int(torch.randint(0, 17 - k, (1,), generator=g)) for k in p.shape)
        x[i, 0, r : r + p.shape[0], c : c + p.shape[1]] += 2.0 * p
    return TensorDataset(x, y)


def build_data() -> dict[str, TensorDataset]:
    """The ``--data`` plug-in: train, val and test splits of (input, target)."""
    return {"train": shapes(1024, 0), "val": shapes(256, 1), "test": shapes(256, 2)}


@functools.cache  # seernet may ask for the model more than once in a process
def build_model() -> nn.Module:
    """The ``--model`` plug-in: SmallNet with trained weights (seeded: the same every call)."""
    torch.manual_seed(0)
    model = SmallNet()
    x, y = build_data()["train"].tensors
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        idx = torch.randint(0, len(y), (64,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


def main(workdir: str, samples: int, quick: bool = False) -> None:
    """The whole run; ``quick``: a smoke test (no fine-tuning while measuring, 40 QAT steps)."""
    import seernet
    from seernet.compression.protocol import Protocol
    from seernet.steps.compress import CompressSettings

    protocol = Protocol(finetune_steps=0, bn_batches=1) if quick else None
    settings = CompressSettings(steps=40, latency_runs=2) if quick else None

    data = build_data()
    job = seernet.Compressor(
        build_model(), data["train"], data["val"], data["test"], workdir=workdir
    )
    print(f"base model: {job.evaluate():.2f}% val accuracy")
    job.collect(samples=samples, protocol=protocol)
    job.fit()
    [policy] = job.solve(flops="50%", bits="mixed")
    print(
        f"50% FLOPs, mixed bits: predicted {policy.predicted.mean:.2f} +/- {policy.predicted.std:.2f}%"
    )
    result = job.compress(policy, settings)
    acc = result.metrics["accuracy"]["after_finetune"]
    print(f"compressed: {acc['test']:.2f}% test accuracy, exports in {result.folder}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="own-model-run")
    p.add_argument("--samples", type=int, default=24)
    p.add_argument("--quick", action="store_true", help="a smoke run: seconds, not minutes")
    args = p.parse_args()
    main(args.workdir, args.samples, args.quick)
