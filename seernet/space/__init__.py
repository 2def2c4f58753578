"""The policy space of a model: policies and their one codec, graph tracing, cost models.

``policy`` (PolicySpace, the codec), ``policy_document`` (a solved policy and what is known
about it: the typed ``policies/<name>.json``), ``graph`` (channel groups and layer shapes
traced from the model), ``costs`` (analytic, differentiable FLOPs/BitOPs/params/size),
``mac_counter`` (an independent MAC counter that runs the model, the cost model's ground truth).
"""
