"""seernet: predictor-guided automated model compression (SeerNet, LeGR, LAP).

Importing this package does no work beyond definitions: no torch import, no CUDA.
"""

__version__ = "0.1.0"
