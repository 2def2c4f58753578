"""LAP's latency table: interpolation in the cost model, and a real (tiny) profile."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from search.levels import Levels
from seernet.errors import UserError
from seernet.latency.table import (
    LatencyTable,
    LayerEntry,
    ProfileSettings,
    layer_grid,
    load_table,
    profile,
    save_table,
)
from seernet.models import create_model
from seernet.space.costs import COST_NAMES, CostModel
from seernet.space.graph import build_space
from seernet.space.policy import Policy, SpaceChoices

SHAPE = (1, 1, 28, 28)


@pytest.fixture(scope="module")
def arch():
    torch.manual_seed(0)
    model = create_model("resnet20", 10, 1).eval()
    return model, build_space(model, SHAPE)


def synthetic(space, fn, overhead: float = 0.25) -> LatencyTable:
    """A table whose entry at (c_in, c_out) is ``fn(c_in, c_out)`` on every layer's grid."""
    layers = {}
    for ly in space.quant_layers:
        c_in, c_out = layer_grid(ly, space)
        ms = [[float(fn(a, b)) for b in c_out] for a in c_in]
        layers[ly.name] = LayerEntry(c_in, c_out, ms, ms)
    table = LatencyTable(space.fingerprint, "resnet20", "cpu: test", "cpu", torch.__version__, 1, 1, 1, 0,
                         layers, 0.0, overhead)  # fmt: skip
    table.full_model_ms = table.full_layers_ms() + overhead
    return table


def test_latency_is_not_a_store_column():
    assert "latency" not in COST_NAMES


def test_interpolation_exact_on_grid_and_bilinear_between(arch):
    _, space = arch
    costs = CostModel(space, latency=synthetic(space, lambda a, b: 1e-3 * a * b))
    levels = Levels(space.levels())
    rng = np.random.default_rng(0)
    # On grid points (valid policies) and anywhere in the box: a*b is bilinear, so exact.
    for x in [*levels.random(5, rng), *rng.uniform(0, 1, (5, space.dim))]:
        xt = torch.as_tensor(x)[None]
        c_in, c_out = costs.layer_channels(xt)
        idx = [i for i, ly in enumerate(space.layers) if ly.kind in ("conv", "linear")]
        expected = (
            1e-3 * c_in[0, idx] * c_out[0, idx]
        ).sum() + 0.25  # ResNet-20 has no depthwise conv
        assert costs.latency(xt).item() == pytest.approx(expected.item(), rel=1e-12)


def test_interpolation_monotone_continuous_with_finite_gradient(arch):
    _, space = arch
    costs = CostModel(
        space, latency=synthetic(space, lambda a, b: np.sqrt(a * b) + 0.01 * (a > 20))
    )
    t = torch.linspace(0, 1, 401, dtype=torch.float64)
    values = costs.latency(t[:, None].expand(-1, space.dim).contiguous())
    steps = values.diff()
    assert (steps >= -1e-12).all()  # non-decreasing along the diagonal
    assert steps.abs().max() < 0.05 * (values[-1] - values[0])  # no jumps
    x = torch.rand(4, space.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = torch.cat(
        [
            x,
            torch.zeros(1, space.dim, dtype=torch.float64),
            torch.ones(1, space.dim, dtype=torch.float64),
        ]
    )
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(costs.latency(x).sum(), x)
    assert torch.isfinite(grad).all() and (grad >= 0).all()
    assert (
        grad[:, : space.n_groups].abs().sum() > 0 and grad[:, space.n_groups :].abs().sum() == 0
    )  # bits: no effect


def test_profile_full_model_prediction_equals_measurement(arch, tmp_path):
    model, space = arch
    with torch.no_grad():
        table = profile(
            model,
            space,
            "resnet20",
            ProfileSettings(repeats=1, warmup=1, model_runs=2, calibration=3),
            torch.device("cpu"),
        )
    assert table.scale > 0  # fitted on whole models; never makes latency fall with more channels
    costs = CostModel(space, latency=table)
    assert costs.unpruned()["latency"] == pytest.approx(table.full_model_ms, abs=1e-6)
    for entry in table.layers.values():  # the envelope is monotone and never below the raw medians
        ms, raw = np.array(entry.ms), np.array(entry.raw_ms)
        assert (
            (np.diff(ms, axis=0) >= 0).all()
            and (np.diff(ms, axis=1) >= 0).all()
            and (ms >= raw).all()
        )
    path = tmp_path / "latency.json"
    save_table(path, table)
    again = load_table(path, space)
    assert CostModel(space, latency=again).unpruned()["latency"] == pytest.approx(
        table.full_model_ms, abs=1e-6
    )
    other = build_space(model, SHAPE, SpaceChoices(max_prune=0.5))
    with pytest.raises(UserError, match="profile-latency"):
        load_table(path, other)
    with pytest.raises(UserError, match="profile-latency"):
        load_table(tmp_path / "missing.json", space)


def test_profile_in_onnxruntime_times_qdq_and_float_kernels(arch):
    pytest.importorskip("onnxruntime")
    model, _ = arch
    space = build_space(
        model, SHAPE, SpaceChoices(max_prune=0.5, prune_step=0.25)
    )  # 3 levels: fast
    settings = ProfileSettings(
        repeats=1, warmup=1, model_runs=2, calibration=2, runtime="onnxruntime"
    )
    table = profile(model, space, "resnet20", settings, torch.device("cpu"))
    assert table.runtime == "onnxruntime" and table.threads == 1 and table.runtime_version
    assert set(table.layers) == set(table.float_layers) == {ly.name for ly in space.quant_layers}
    # fitted on the unpruned model, 2 calibration models and their low-bit twins
    assert table.checks["calibration"]["models"] == 4 and table.full_model_ms > 0
    assert table.scale >= 0 and table.lowbit_ms >= 0 and table.lowbit_ms_per_element >= 0
    assert set(table.align_ms) == {"8", "16"} and min(table.align_ms.values()) >= 0
    assert set(table.input_pixels) == set(table.layers)
    costs = CostModel(space, latency=table)
    assert costs.unpruned()["latency"] == pytest.approx(table.full_model_ms, abs=1e-6)
    again = LatencyTable.from_json(table.to_json())
    assert again.runtime == "onnxruntime" and set(again.float_layers) == set(table.float_layers)
    # no calibration models: the layer sum as timed, through the unpruned model's point
    bare = profile(model, space, "resnet20", replace(settings, calibration=0), torch.device("cpu"))
    assert bare.scale == 1.0 and bare.lowbit_ms == 0.0 and not any(bare.align_ms.values())
    # costs are reported to 6 decimals
    assert CostModel(space, latency=bare).unpruned()["latency"] == pytest.approx(
        bare.full_model_ms, abs=1e-6
    )
    with pytest.raises(ValueError, match="unknown runtime"):
        ProfileSettings(runtime="tensorrt")


def test_ort_latency_adds_requantization_below_8_bits_and_broken_channel_blocks(arch):
    """The ORT terms, exactly: an input below 8 bits adds lowbit_ms + per-element x channels x
    pixels, a group off a multiple adds align_ms; latency falls as an input rises from 7 to 8."""
    _, space = arch
    table = synthetic(space, lambda a, b: 1e-3 * a * b)
    table.lowbit_ms, table.lowbit_ms_per_element = 0.01, 1e-6
    table.input_pixels = {ly.name: 100 for ly in space.quant_layers}
    table.align_ms = {"16": 0.05}
    costs = CostModel(space, latency=table)
    full = space.full_policy()
    base = costs.of_policy(full)["latency"]
    layer = space.free_layers[3]
    low = Policy(dict(full.channels), {**full.bits, layer.name: (8, 4)})
    assert costs.of_policy(low)["latency"] == pytest.approx(base + 0.01 + 1e-6 * layer.c_in * 100)
    w_low = Policy(dict(full.channels), {**full.bits, layer.name: (2, 8)})
    assert costs.of_policy(w_low)["latency"] == pytest.approx(base)  # weight bits: stored as int8
    group = next(g for g in space.groups if g.channels % 16 == 0 and any(k % 16 for k in g.keep))
    odd = next(k for k in group.keep if k % 16)
    pruned = Policy({**full.channels, group.name: odd}, dict(full.bits))
    x = torch.as_tensor(space.encode(pruned))[None]
    assert costs.misaligned_groups(x, 16).item() == 1 and costs.misaligned_groups(x, 8).item() <= 1
    sum_only = CostModel(space, latency=synthetic(space, lambda a, b: 1e-3 * a * b))
    assert costs.latency(x).item() == pytest.approx(sum_only.latency(x).item() + 0.05)
    # on the relaxed box: continuous, and the a-bits coordinate's gradient is negative near 8
    xa = torch.as_tensor(space.encode(full))[None].clone()
    j = space.n_groups + len(space.free_layers) + 3  # abits of free layer 3
    xa[0, j] -= 0.5 * (space.encode_bits(8) - space.encode_bits(7))
    xa.requires_grad_(True)
    (grad,) = torch.autograd.grad(costs.latency(xa).sum(), xa)
    assert grad[0, j] < 0 and torch.isfinite(grad).all()


def test_ort_latency_charges_a_broken_block_per_element_it_moves(arch):
    """A group off a multiple adds align_ms_per_element x its kept channels x the input pixels
    of every layer it feeds (a reorder moves the tensor); a group on the block adds nothing."""
    _, space = arch
    table = synthetic(space, lambda a, b: 1e-3 * a * b)
    table.input_pixels = {ly.name: 100 for ly in space.quant_layers}
    table.align_ms_per_element = {"16": 1e-5}
    costs = CostModel(space, latency=table)
    full = space.full_policy()
    gi, group = next(
        (i, g) for i, g in enumerate(space.groups)
        if g.channels % 16 == 0 and any(k % 16 for k in g.keep)
    )  # fmt: skip
    odd = next(k for k in group.keep if k % 16)
    even = Policy({**full.channels, group.name: 16}, dict(full.bits))
    pruned = Policy({**full.channels, group.name: odd}, dict(full.bits))
    fed = sum(coef * 100 for ly in space.quant_layers for g, coef in ly.in_terms if g == gi)
    sum_only = CostModel(space, latency=synthetic(space, lambda a, b: 1e-3 * a * b))
    for policy, extra in ((pruned, 1e-5 * odd * fed), (even, 0.0)):
        x = torch.as_tensor(space.encode(policy))[None]
        assert fed > 0 and costs.latency(x).item() == pytest.approx(
            sum_only.latency(x).item() + extra
        )


def test_solve_accepts_a_latency_budget_only_8_bit_inputs_reach(arch):
    """The fastest ORT model has 8-bit inputs, not the space's lowest bits: a budget between
    the two is attainable; one below the fastest is refused."""
    from search.levels import Levels
    from seernet.steps.solve import check_attainable

    _, space = arch
    table = synthetic(space, lambda a, b: 1e-3 * a * b)
    table.lowbit_ms, table.input_pixels = 0.05, {ly.name: 1 for ly in space.quant_layers}
    costs = CostModel(space, latency=table)
    lower = Levels(space.levels()).lower
    top_bits = lower.copy()
    top_bits[space.n_groups :] = 1.0
    fast = costs.latency(torch.as_tensor(top_bits)[None]).item()
    slow = costs.latency(torch.as_tensor(lower)[None]).item()
    assert fast < slow

    class Ctx:  # what check_attainable reads of a RunContext
        channel_multiple = 1

    ctx = Ctx()
    ctx.space, ctx.costs = space, costs
    check_attainable(ctx, {"latency": 0.5 * (fast + slow)}, None, None)  # no error
    with pytest.raises(UserError, match="smallest model"):
        check_attainable(ctx, {"latency": 0.99 * fast}, None, None)
