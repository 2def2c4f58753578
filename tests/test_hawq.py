"""HAWQ-V3-style sensitivities and bit allocation on a small seernet model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seernet.compression.hawq import Sensitivity, hawq_policy, perturbations, sensitivities
from seernet.models import create_model
from seernet.space.costs import CostModel
from seernet.space.graph import build_space


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = create_model("resnet20", 10, 1).eval()
    space = build_space(model, (1, 1, 28, 28))
    names = [ly.name for ly in space.free_layers]
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(6, 1, 28, 28, generator=g), torch.randint(0, 10, (6,), generator=g))]
    sens = sensitivities(model, names, data, list(space.choices.bits), probes=2)
    return model, space, CostModel(space), sens


def test_sensitivities_have_one_row_per_free_layer_and_fall_with_bits(setup):
    model, space, _, sens = setup
    om = sens.omega()
    assert om.shape == (len(space.free_layers), len(space.choices.bits)) and sens.hvps == 2
    pert = np.asarray(sens.perturbation)
    assert (pert > 0).all() and (np.diff(pert, axis=1) < 0).all()  # more bits, smaller ||Q(W) - W||
    assert sens.n_weights[0] == model.get_submodule(sens.layers[0]).weight.numel()
    assert Sensitivity(**sens.to_json()).omega() == pytest.approx(om)


def test_perturbation_uses_seernets_quantizer(setup):
    model, space, _, _ = setup
    name = space.free_layers[0].name
    w = model.get_submodule(name).weight.detach()
    (p8,) = perturbations(model, [name], [8])
    # 8-bit symmetric per-channel codes: the error per weight is at most half a step of max|w|/127
    step = w.abs().flatten(1).amax(1) / 127
    assert 0 < p8[0] <= float((0.5 * step[:, None].expand(-1, w[0].numel()) ** 2).sum() * 4)


def test_policies_meet_bitops_and_size_budgets(setup):
    _, space, costs, sens = setup
    channels = space.full_policy().channels
    full = costs.unpruned()
    for b in (4, 3):
        uniform = costs.of_policy(space.full_policy(b))["bitops"]
        pol = hawq_policy(space, costs, channels, sens, {"bitops": uniform})
        space.validate(pol)
        assert costs.of_policy(pol)["bitops"] <= uniform
        assert all(w == a for w, a in pol.bits.values())  # one precision per layer under BitOPs
    size = costs.of_policy(space.full_policy(3))["size"]
    pol = hawq_policy(space, costs, channels, sens, {"size": size})
    assert costs.of_policy(pol)["size"] <= size
    assert all(pol.bits[ly.name][1] == 8 for ly in space.free_layers)  # activations cost no memory
    rich = hawq_policy(space, costs, channels, sens, {"bitops": 2 * full["bitops"]})
    assert rich.bits == space.full_policy(8).bits


def test_impossible_or_ambiguous_budgets_are_errors(setup):
    _, space, costs, sens = setup
    channels = space.full_policy().channels
    with pytest.raises(ValueError, match="no allocation"):
        hawq_policy(space, costs, channels, sens, {"bitops": 1.0})
    with pytest.raises(ValueError, match="one BitOPs or size"):
        hawq_policy(space, costs, channels, sens, {"bitops": 1e12, "size": 1e12})


def test_negative_trace_estimates_still_prefer_more_bits():
    sens = Sensitivity(
        layers=["a", "b"],
        bits=[2, 4, 8],
        trace=[-3.0, 5.0],
        trace_stderr=[1.0, 1.0],
        n_weights=[10, 10],
        perturbation=[[4.0, 1.0, 0.1], [4.0, 1.0, 0.1]],
        hvps=2,
    )
    om = sens.omega()
    assert (om > 0).all() and (np.diff(om, axis=1) < 0).all()
    assert om[0, 0] < om[1, 0]  # the flat layer is the less sensitive one
