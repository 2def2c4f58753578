"""The policy space of a model: policies and their one codec, graph tracing, cost models.

``policy`` (PolicySpace, the codec), ``graph`` (channel groups and layer shapes traced from
the model), ``costs`` (analytic, differentiable FLOPs/BitOPs/params/size), ``mac_counter``
(an independent MAC counter that runs the model, the cost model's ground truth).
"""
