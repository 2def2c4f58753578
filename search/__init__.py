"""Policy search algorithms (solver, active sampler, baselines, LeGR).

Pure algorithm package: never imports ``seernet``. Everything it needs (the discrete
levels of each dimension, cost functions, an evaluate callback) is passed in.
"""
