"""torchvision classification models by name, always built without hub weights."""

from __future__ import annotations

from torch import nn

from seernet.models.registry import register_model

TORCHVISION_NAMES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
)


def _adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Replace the stem convolution when the data is not RGB."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            new = nn.Conv2d(
                in_channels, module.out_channels, module.kernel_size, module.stride,
                module.padding, bias=module.bias is not None,
            )  # fmt: skip
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.rsplit(".", 1)[-1], new)
            return


def _builder(name: str):  # returns a registered builder
    def build(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        if in_channels != 3:
            _adapt_first_conv(model, in_channels)
        return model

    build.__name__ = name
    return build


for _name in TORCHVISION_NAMES:
    register_model(_name)(_builder(_name))
