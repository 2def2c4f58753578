"""Data: datasets read from local files, batch iteration, and the training/accuracy loops."""
