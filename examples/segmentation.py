"""A task that is not classification: a small segmentation net, scored by mean IoU.

    python examples/segmentation.py --workdir seg-run

seernet needs three things of a task: a model whose last layer makes the outputs (here a
1x1 convolution giving 2 logits per pixel: no ``nn.Linear`` anywhere), a ``metric(model,
batches) -> float`` where higher is better (mean IoU in percent), and a ``loss(outputs,
targets)`` to fine-tune with (per-pixel cross-entropy). The images are generated here:
noise with bright rectangles, the target is the rectangles' mask.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import TensorDataset


class TinySegNet(nn.Module):
    """Encoder (two strided blocks), decoder (upsample + skip add), 1x1 head: logits per pixel."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()

        def block(i: int, o: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()
            )

        self.stem = block(1, width)
        self.down = block(width, 2 * width, stride=2)
        self.mid = block(2 * width, 2 * width)
        self.up = nn.Sequential(nn.Upsample(scale_factor=2), block(2 * width, width))
        self.head = nn.Conv2d(width, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        return self.head(s + self.up(self.mid(self.down(s))))


def rectangles(n: int, seed: int, size: int = 24) -> TensorDataset:
    """Noise images with one or two bright rectangles; targets are (H, W) masks of 0/1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g) * 0.6
    mask = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for _ in range(int(torch.randint(1, 3, (1,), generator=g))):
            h, w = (int(v) for v in torch.randint(4, 11, (2,), generator=g))
            r, c = (
                int(torch.randint(0, size - h, (1,), generator=g)),
                int(torch.randint(0, size - w, (1,), generator=g)),
            )
            mask[i, r : r + h, c : c + w] = 1
    return TensorDataset(x + 1.5 * mask[:, None].float(), mask)


def pixel_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per pixel (the ``loss`` plug-in)."""
    return nn.functional.cross_entropy(outputs, targets)


@torch.no_grad()
def mean_iou(model: nn.Module, batches) -> float:
    """Mean over the two classes of intersection / union, in percent (the ``metric`` plug-in)."""
    inter, union = torch.zeros(2), torch.zeros(2)
    for x, y in batches:
        pred = model(x).argmax(1)
        for k in (0, 1):
            inter[k] += ((pred == k) & (y == k)).sum().cpu()
            union[k] += ((pred == k) | (y == k)).sum().cpu()
    return float(100.0 * (inter / union.clamp(min=1)).mean())


def build_data() -> dict[str, TensorDataset]:
    return {"train": rectangles(512, 0), "val": rectangles(128, 1), "test": rectangles(128, 2)}


def build_model() -> nn.Module:
    """TinySegNet trained for a few seconds (seeded: the same weights every call)."""
    torch.manual_seed(0)
    model = TinySegNet()
    x, y = build_data()["train"].tensors
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        idx = torch.randint(0, len(y), (32,))
        opt.zero_grad()
        pixel_loss(model(x[idx]), y[idx]).backward()
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
        build_model(),
        data["train"],
        data["val"],
        data["test"],
        metric=mean_iou,
        loss=pixel_loss,
        workdir=workdir,
    )
    print(f"base model: mean IoU {job.evaluate():.2f}%")
    job.collect(samples=samples, protocol=protocol)
    job.fit()
    [policy] = job.solve(flops="40%", bits=8)
    result = job.compress(policy, settings)
    print(f"40% FLOPs at 8 bits: predicted {policy.predicted.mean:.2f}, "
          f"test mean IoU {result.metrics['accuracy']['after_finetune']['test']:.2f}%")  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="seg-run")
    p.add_argument("--samples", type=int, default=24)
    p.add_argument("--quick", action="store_true", help="a smoke run: seconds, not minutes")
    args = p.parse_args()
    main(args.workdir, args.samples, args.quick)
