"""Run state on disk: the workspace folder, its artifact names, checkpoints, the sample store.

Imports nothing of seernet but ``errors``; every other package may import it.
"""
