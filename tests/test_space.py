"""Policy space: codec round trip, levels, fingerprint, validation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.levels import Levels
from seernet.errors import UserError
from seernet.models import create_model
from seernet.space.graph import build_space
from seernet.space.policy import Policy, SpaceChoices


@pytest.fixture(scope="module")
def space():
    return build_space(create_model("resnet20", 10, 1), (1, 1, 28, 28))


def test_resnet20_groups_and_layout(space):
    assert space.n_groups == 12  # 3 residual streams + 9 block-internal groups
    assert len(space.quant_layers) == 22 and len(space.free_layers) == 20
    assert space.dim == 12 + 2 * 20 == len(space.levels()) == len(space.dim_names())
    fixed = [ly.name for ly in space.quant_layers if ly.fixed_bits]
    assert fixed == ["conv1", "fc"]  # first conv and classifier stay at 8 bits
    assert "fc" not in {g.name for g in space.groups}  # class outputs are never pruned


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_codec_round_trip(space, seed):
    x = Levels(space.levels()).random(1, np.random.default_rng(seed))[0]
    policy = space.decode(x)
    assert np.allclose(space.encode(policy), x)
    assert space.decode(space.encode(policy)) == policy


@settings(max_examples=30, deadline=None)
@given(x=st.lists(st.floats(0, 1), min_size=52, max_size=52))
def test_decode_rounds_any_vector_to_a_valid_policy(space, x):
    policy = space.decode(np.array(x))
    space.validate(policy)
    snapped = Levels(space.levels()).snap(np.array(x))
    assert np.allclose(space.encode(policy), snapped)


def test_encoding_is_monotone_in_raw_choices(space):
    g = space.groups[0]
    enc = [
        space.encode(Policy({**space.full_policy().channels, g.name: n}, space.full_policy().bits))[
            0
        ]
        for n in g.keep
    ]
    assert enc == sorted(enc) and enc[-1] == 1.0


def test_invalid_policies_are_refused(space):
    full = space.full_policy()
    with pytest.raises(UserError, match="not a valid choice"):
        space.encode(Policy({**full.channels, space.groups[0].name: 7}, full.bits))
    with pytest.raises(UserError, match="bits"):
        space.encode(Policy(full.channels, {**full.bits, space.free_layers[0].name: (7, 4)}))
    with pytest.raises(UserError, match="bits"):
        space.encode(Policy(full.channels, {**full.bits, "conv1": (4, 4)}))  # fixed layer
    with pytest.raises(UserError, match="malformed"):
        Policy.from_json({"channels": {}})


def test_fingerprint_is_stable_and_sensitive():
    a = build_space(create_model("resnet20", 10, 1), (1, 1, 28, 28))
    b = build_space(create_model("resnet20", 10, 1), (1, 1, 28, 28))
    c = build_space(create_model("resnet20", 10, 1), (1, 1, 28, 28), SpaceChoices(bits=(4, 8)))
    d = build_space(create_model("resnet32", 10, 1), (1, 1, 28, 28))
    assert a.fingerprint == b.fingerprint
    assert len({a.fingerprint, c.fingerprint, d.fingerprint}) == 3


def test_choices_are_validated():
    with pytest.raises(ValueError):
        SpaceChoices(max_prune=1.0)
    with pytest.raises(ValueError):
        SpaceChoices(bits=(1, 8))


def test_uniform_policy_keeps_the_nearest_valid_count_everywhere(space):
    half = space.uniform_policy(0.5, 4)
    for g in space.groups:
        assert half.channels[g.name] in g.keep
        assert abs(half.channels[g.name] - g.channels / 2) <= min(
            abs(n - g.channels / 2) for n in g.keep
        )
    assert {b for ly, b in half.bits.items() if ly not in ("conv1", "fc")} == {(4, 4)}
    assert space.uniform_policy(1.0) == space.full_policy()
    assert np.array_equal(space.encode(space.uniform_policy(1.0)), np.ones(space.dim))
    with pytest.raises(ValueError, match="keep fraction"):
        space.uniform_policy(0.0)
    assert space.nearest_bits(7) == 6 and space.nearest_bits(4) == 4


def test_anchor_ladder_starts_at_the_base_policy(space):
    from seernet.steps.collect import anchor_policies

    anchors = anchor_policies(space)
    assert anchors[0] == space.full_policy()
    assert len(anchors) == 6  # keep 1, 1/2 x bits 8, 4, 2
    costs = [space.encode(p).sum() for p in anchors]
    assert costs[0] == max(costs) and len({tuple(space.encode(p)) for p in anchors}) == 6


def test_anchors_hold_the_global_ranking_at_flops_fractions(space):
    """Given the global ranking's channel counts (rows from least to most pruned), the
    anchors add, per anchor bit-width and FLOPs fraction f, the least-pruned row within f."""
    from seernet.space.costs import CostModel
    from seernet.steps.collect import RANKING_BITS, RANKING_FLOPS, anchor_policies

    costs = CostModel(space)
    # a stand-in ranking: every group at the same keep fraction, from 1 down to the least allowed
    ranking = np.array([[next(k for k in g.keep if k >= f * g.keep[-1]) for g in space.groups]
                        for f in np.linspace(1.0, 0.25, 16)], dtype=np.float64)  # fmt: skip
    rows = [tuple(r) for r in ranking.astype(int).tolist()]
    anchors = anchor_policies(space, ranking, costs)[6:]
    base = costs.of_policy(space.full_policy())["flops"]
    free = {ly.name for ly in space.free_layers}
    seen = set()
    for p in anchors:
        (bits,) = {b for name, (b, _) in p.bits.items() if name in free}  # one bit-width
        row = rows.index(tuple(p.channels[g.name] for g in space.groups))
        flops = costs.of_policy(p)["flops"] / base
        # the least-pruned row within some fraction: the row before it exceeds that fraction
        f = min(f for f in RANKING_FLOPS if flops <= f + 1e-9)
        prev = Policy(dict(zip(p.channels, rows[row - 1], strict=True)), p.bits)
        assert row == 0 or costs.of_policy(prev)["flops"] / base > f
        seen.add((bits, f))
    wanted = {space.nearest_bits(b) for b in RANKING_BITS}
    assert {b for b, _ in seen} == wanted and len(seen) == len(anchors)
