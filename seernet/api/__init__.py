"""The Python API (``seernet.Compressor``) and the steps it and the CLI share (``workflow``).

Loaded lazily (PEP 562), so importing the package stays torch-free."""

__all__ = ["Compressed", "Compressor", "PolicyDocument"]


def __getattr__(name: str):
    if name in __all__:
        from seernet.api import compressor

        return getattr(compressor, name)
    raise AttributeError(f"module 'seernet.api' has no attribute {name!r}")
