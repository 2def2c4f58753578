"""VGG-small (as used by LQ-Nets and the quantization literature): six 3x3 convs, one FC."""

from __future__ import annotations

from torch import Tensor, nn

from seernet.models.registry import register_model


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class VGGSmall(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 128) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn(in_channels, w), *_conv_bn(w, w), nn.MaxPool2d(2),
            *_conv_bn(w, 2 * w), *_conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            *_conv_bn(2 * w, 4 * w), *_conv_bn(4 * w, 4 * w),
        )  # fmt: skip
        # Global pooling keeps the classifier independent of the input resolution.
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@register_model("vgg_small")
def vgg_small(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return VGGSmall(num_classes, in_channels)
