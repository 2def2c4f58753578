"""Model zoo: one registry, one factory (``create_model``)."""

from seernet.models.registry import create_model, model_names, register_model

__all__ = ["create_model", "model_names", "register_model"]
