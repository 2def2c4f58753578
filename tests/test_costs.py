"""The analytic cost model equals an independent counter on the physically pruned model."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.levels import Levels
from seernet.compression.prune import prune_model
from seernet.models import create_model
from seernet.space.costs import CostModel
from seernet.space.graph import build_space
from seernet.space.mac_counter import count_macs_params

ARCHS = {  # small inputs keep the suite fast; the counts are exact at any size
    "resnet20": ((1, 1, 28, 28), 8),
    "vgg_small": ((1, 3, 16, 16), 5),
    "resnet18": ((1, 3, 32, 32), 3),
    "mobilenet_v2": ((1, 3, 32, 32), 4),
}
_CACHE: dict = {}


def setup(name: str):
    if name not in _CACHE:
        shape = ARCHS[name][0]
        torch.manual_seed(0)
        model = create_model(name, 10, shape[1]).eval()
        space = build_space(model, shape)
        _CACHE[name] = (model, space, CostModel(space), shape)
    return _CACHE[name]


@pytest.mark.parametrize("name", list(ARCHS))
def test_unpruned_costs_match_counter(name):
    model, _, costs, shape = setup(name)
    macs, params = count_macs_params(model, shape)
    full = costs.unpruned()
    assert full["flops"] == macs and full["params"] == params


@pytest.mark.parametrize("name", list(ARCHS))
def test_analytic_equals_counted_on_pruned_model(name):
    model, space, costs, shape = setup(name)
    levels = Levels(space.levels())

    @settings(max_examples=ARCHS[name][1], deadline=None, suppress_health_check=list(HealthCheck))
    @given(seed=st.integers(0, 2**32 - 1))
    def check(seed):
        policy = space.decode(levels.random(1, np.random.default_rng(seed))[0])
        pruned = prune_model(model, space, policy)
        macs, params = count_macs_params(pruned, shape)
        analytic = costs.of_policy(policy)
        assert analytic["flops"] == macs
        assert analytic["params"] == params
        out = pruned(torch.zeros(shape))  # the pruned model still runs
        assert out.shape == (1, 10)

    check()


def test_pruned_model_has_the_policys_channel_counts():
    model, space, costs, shape = setup("resnet20")
    policy = space.decode(Levels(space.levels()).random(1, np.random.default_rng(3))[0])
    pruned = prune_model(model, space, policy)
    for row in costs.per_layer(policy):
        module = pruned.get_submodule(row["layer"])
        got = (
            (module.in_features, module.out_features)
            if isinstance(module, torch.nn.Linear)
            else (module.in_channels, module.out_channels)
        )
        assert got == (row["in"], row["out"])


def test_costs_are_monotone_and_differentiable():
    _, space, costs, _ = setup("resnet20")
    x = torch.full((1, space.dim), 0.5, dtype=torch.float64, requires_grad=True)
    for name, fn in costs.functions().items():
        (grad,) = torch.autograd.grad(fn(x).sum(), x)
        assert torch.isfinite(grad).all() and (grad >= 0).all(), name
    bitops = costs.bitops(torch.ones(1, space.dim)).item()
    assert bitops == pytest.approx(costs.unpruned()["flops"] * 64)  # 8-bit everywhere


def _macs_by_hooks(model: torch.nn.Module, shape: tuple) -> dict[str, int]:
    """MACs of every conv/linear layer from its real output shape (independent of CostModel)."""
    macs = {}

    def hook(name):
        def count(m, _inputs, out):
            if isinstance(m, torch.nn.Conv2d):
                kh, kw = m.kernel_size
                macs[name] = out[0].numel() * (m.in_channels // m.groups) * kh * kw
            else:
                macs[name] = m.in_features * m.out_features

        return count

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]  # fmt: skip
    with torch.no_grad():
        model(torch.zeros(shape))
    for h in handles:
        h.remove()
    return macs


def test_bitops_by_hand_on_uniform_4bit():
    model, space, costs, shape = setup("resnet20")
    policy = space.full_policy(bits=4)
    macs = _macs_by_hooks(model, shape)
    # First conv and classifier stay at 8/8 bits, every other layer at 4/4.
    expected = sum(m * (64 if name in ("conv1", "fc") else 16) for name, m in macs.items())
    c = costs.of_policy(policy)
    assert c["bitops"] == expected
    assert c["size"] < costs.unpruned()["size"]
