"""The one codec (``PolicySpace``) and the cost model agree on every policy.

Costs are computed twice: by ``CostModel`` from the encoded vector, and here straight
from the raw choices (kept channels and bit-widths per layer, summed by hand), so a
drift between how the space encodes and how the cost model decodes shows up.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seernet.models import create_model
from seernet.space.costs import CostModel
from seernet.space.graph import build_space
from seernet.space.policy import Policy, PolicySpace, SpaceChoices


@pytest.fixture(scope="module", params=["resnet20", "vgg_small"])
def space(request) -> PolicySpace:
    # bits (3, 5, 8): an uneven set, so an encoding that assumed even steps would fail
    return build_space(
        create_model(request.param, 10, 1), (1, 1, 16, 16), SpaceChoices(bits=(3, 5, 8))
    )


def random_policy(space: PolicySpace, seed: int) -> Policy:
    rng = np.random.default_rng(seed)
    bits = space.choices.bits
    channels = {g.name: int(rng.choice(g.keep)) for g in space.groups}
    fixed = space.choices.fixed_bits
    return Policy(channels, {ly.name: (fixed, fixed) if ly.fixed_bits else (int(rng.choice(bits)), int(rng.choice(bits)))
                             for ly in space.quant_layers})  # fmt: skip


def raw_costs(space: PolicySpace, policy: Policy) -> dict[str, float]:
    """FLOPs (MACs) and BitOPs summed layer by layer from the raw choices, no codec involved."""
    lost = {i: g.channels - policy.channels[g.name] for i, g in enumerate(space.groups)}
    flops = bitops = 0.0
    for ly in space.quant_layers:
        c_in = ly.c_in - sum(coef * lost[g] for g, coef in ly.in_terms)
        c_out = ly.c_out - sum(coef * lost[g] for g, coef in ly.out_terms)
        per_position = (
            c_out if ly.depthwise else c_out * c_in / (ly.conv_groups if ly.kind == "conv" else 1)
        )
        macs = per_position * ly.kernel * ly.spatial
        w, a = policy.bits[ly.name]
        flops += macs
        bitops += macs * w * a
    return {"flops": flops, "bitops": bitops}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_codec_and_cost_model_agree(space, seed):
    policy = random_policy(space, seed)
    x = space.encode(policy)
    assert space.decode(x) == policy
    xt = torch.as_tensor(x)[None]
    kept = CostModel(space).kept_channels(xt)[0]
    assert kept.tolist() == [float(policy.channels[g.name]) for g in space.groups]
    w, a = space.relaxed_bits(xt)
    assert list(zip(w[0].tolist(), a[0].tolist(), strict=True)) == [tuple(map(float, policy.bits[ly.name]))
                                                                     for ly in space.quant_layers]  # fmt: skip
    costs = CostModel(space).of_policy(space.decode(x))
    for name, value in raw_costs(space, policy).items():
        assert costs[name] == pytest.approx(value, rel=1e-12), name


def test_uniform_encoding_and_bits_mask_use_the_codec(space):
    keep = np.array([[g.keep[1 if len(g.keep) > 1 else 0] for g in space.groups]])
    x = space.encode_uniform(keep, 5)[0]
    policy = space.decode(x)
    assert np.array_equal(space.encode(policy), x)
    fixed_bits = space.choices.fixed_bits
    assert all(
        policy.bits[ly.name] == ((fixed_bits,) * 2 if ly.fixed_bits else (5, 5))
        for ly in space.quant_layers
    )
    fixed, values = space.bits_mask(5)
    assert fixed.sum() == 2 * len(space.free_layers) and np.array_equal(
        values[fixed], x[space.n_groups :]
    )
    with pytest.raises(ValueError, match="not one of this space's bit-widths"):
        space.bits_mask(4)


def test_relaxed_decode_is_differentiable(space):
    x = torch.full((2, space.dim), 0.5, dtype=torch.float64, requires_grad=True)
    CostModel(space).bitops(x).sum().backward()
    assert x.grad is not None and bool((x.grad >= 0).all()) and float(x.grad.abs().sum()) > 0
