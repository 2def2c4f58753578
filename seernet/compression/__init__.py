"""What is done to a model: prune, quantize, export, and measure one policy (``protocol``)."""
