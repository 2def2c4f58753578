"""LAP's latency: timing models, the per-layer lookup table, and timings in ONNX Runtime.

Above ``compression``: a table entry is a pruned (and, in ONNX Runtime, QDQ-exported) layer.
"""
