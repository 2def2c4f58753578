"""seernet: predictor-guided automated model compression (SeerNet, LeGR, LAP).

Importing this package does no work beyond definitions: no torch import, no CUDA;
``seernet.Compressor`` (the Python API) imports torch when first used.
"""

__version__ = "0.1.0"
__all__ = ["Compressed", "Compressor", "PolicyDocument", "__version__"]


def __getattr__(name: str):  # PEP 562: the API loads on first use
    if name in ("Compressor", "Compressed", "PolicyDocument"):
        from seernet import api

        return getattr(api, name)
    raise AttributeError(f"module 'seernet' has no attribute {name!r}")
