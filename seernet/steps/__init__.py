"""The pipeline steps, one module per CLI command (``collect``, ``fit``, ``solve``, ...).

``context`` loads what every step needs about its run from the workspace, once.
"""
