"""Registry of model builders; ``create_model`` is the single public factory."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from seernet.errors import UserError
from seernet.plugins import call_plugin, is_plugin, refuse_python_object

ModelBuilder = Callable[..., nn.Module]
_MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: ``builder(num_classes, in_channels) -> nn.Module`` under ``name``."""

    def wrap(fn: ModelBuilder) -> ModelBuilder:
        _MODELS[name] = fn
        return fn

    return wrap


def _load_builtin() -> None:
    # Imported lazily so that ``import seernet`` stays cheap.
    from seernet.models import cifar_resnet, torchvision_models, vgg  # noqa: F401


def model_names() -> list[str]:
    _load_builtin()
    return sorted(_MODELS)


def create_model(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build a freshly initialised model by registry name (weights come from files only), or
    the model a plug-in ``FILE.py:CALLABLE`` returns (with its own weights)."""
    refuse_python_object(name, "model")
    if is_plugin(name):
        return plugin_model(name)
    _load_builtin()
    if name not in _MODELS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(sorted(_MODELS))}")
    if num_classes < 2 or in_channels < 1:
        raise UserError(
            f"model needs num_classes >= 2 and in_channels >= 1, got {num_classes}, {in_channels}"
        )
    return _MODELS[name](num_classes=num_classes, in_channels=in_channels)


def plugin_model(spec: str) -> nn.Module:
    """The ``nn.Module`` that the zero-argument plug-in ``spec`` returns, in eval mode."""
    model = call_plugin(spec, "model")
    if not isinstance(model, nn.Module):
        raise UserError(f"{spec} must return a torch.nn.Module, got {type(model).__name__}")
    return model.eval()
