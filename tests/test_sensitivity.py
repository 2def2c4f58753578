"""Damage tables: one entry per coordinate level, non-negative, monotone, cached per workspace."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import seernet.compression.sensitivity as sensitivity
import seernet.steps.sensitivity as steps_sensitivity
from seernet.compression.protocol import Protocol
from seernet.compression.sensitivity import DamageTable
from seernet.space.policy import SpaceChoices
from seernet.steps.context import RunContext, record_space
from seernet.steps.sensitivity import coordinate_kinds, damage_table
from seernet.workspace.artifacts import SENSITIVITY_NAME
from seernet.workspace.folder import Workspace


@pytest.fixture
def ctx(tmp_path, run_args) -> RunContext:
    ws = Workspace(tmp_path / "w")
    c = RunContext(ws, ws.open({"data_dir": run_args[1], "val_size": 100, "weights": run_args[5]}),
                   torch.device("cpu"))  # fmt: skip
    record_space(c, SpaceChoices(bits=(4, 8)))
    return c


def test_table_shape_and_invariants(ctx):
    table = damage_table(ctx, Protocol(bn_batches=1))
    levels = ctx.space.levels()
    assert table.fingerprint == ctx.space.fingerprint
    assert [len(v) for v in table.levels] == [len(v) for v in levels]
    for lv, dv in zip(table.levels, table.damage, strict=True):
        assert np.all(np.asarray(dv) >= 0) and np.all(np.diff(dv) <= 1e-12) and dv[-1] == 0.0
        assert np.all(np.diff(lv) > 0)
    kinds = coordinate_kinds(ctx)
    assert len(kinds) == ctx.space.dim and set(kinds.tolist()) == {0, 1, 2}


def test_table_is_cached_and_remeasured_for_another_space(ctx, monkeypatch):
    first = damage_table(ctx, Protocol(bn_batches=1))
    path = ctx.ws.path(SENSITIVITY_NAME)
    assert DamageTable.from_json(json.loads(path.read_text())) == first

    def refuse(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(steps_sensitivity, "measure_damage", refuse)
    assert damage_table(ctx, Protocol(bn_batches=1)) == first
    obj = json.loads(path.read_text())
    path.write_text(json.dumps({**obj, "fingerprint": "other"}))
    with pytest.raises(AssertionError, match="measured again"):
        damage_table(ctx, Protocol(bn_batches=1))


def test_unreadable_table_is_a_user_error(ctx):
    from seernet.errors import UserError

    ctx.ws.path(SENSITIVITY_NAME).write_text('{"format": "x"}')
    with pytest.raises(UserError, match="not a readable sensitivity table"):
        damage_table(ctx, Protocol(bn_batches=1))


def test_older_table_version_is_remeasured(ctx, monkeypatch):
    first = damage_table(ctx, Protocol(bn_batches=1))
    path = ctx.ws.path(SENSITIVITY_NAME)
    path.write_text(json.dumps({**json.loads(path.read_text()), "version": 1}))
    monkeypatch.setattr(steps_sensitivity, "measure_damage", lambda *a, **k: first)
    assert damage_table(ctx, Protocol(bn_batches=1)) == first
    assert json.loads(path.read_text())["version"] == sensitivity.VERSION


def test_activation_variant_matches_a_full_recalibration(ctx):
    """A new activation width gets the range calibrate_ would give it, every other layer unchanged."""
    from seernet.compression.quant import calibrate_, quant_layers

    proto = Protocol(bn_batches=1)
    builder = sensitivity._Builder(ctx.model, ctx.space, ctx.splits, proto, ctx.device, None)
    layer = ctx.space.free_layers[1].name
    w_bits = quant_layers(builder.base)[layer].w_bits
    fast = builder.bits(layer, w_bits, 4)
    full = copy.deepcopy(builder.base)
    quant_layers(full)[layer].set_bits(w_bits, 4)
    calibrate_(full, builder.calib, seed=proto.seed, weight_clip=proto.weight_clip)
    for name, q in quant_layers(full).items():
        f = quant_layers(fast)[name]
        assert (f.w_bits, f.a_bits, f.act_signed) == (q.w_bits, q.a_bits, q.act_signed)
        assert torch.equal(f.act_scale, q.act_scale) and torch.equal(f.weight_scale, q.weight_scale)
    x = torch.randn(4, *ctx.space.input_shape[1:])
    assert torch.equal(fast.eval()(x), full.eval()(x))


def test_table_measured_in_worker_processes_equals_the_serial_one(ctx):
    """collect --workers N measures the table's shares on its workers: the same table."""
    from seernet.steps.backends import BackendConfig

    serial = damage_table(ctx, Protocol(bn_batches=1))
    ctx.ws.path(SENSITIVITY_NAME).unlink()
    backend = BackendConfig(workers=2)
    runner = backend.make()
    try:
        shared = damage_table(ctx, Protocol(bn_batches=1), backend, runner)
    finally:
        runner.close()
    assert shared.base_loss == pytest.approx(serial.base_loss, rel=1e-5)
    assert shared.levels == serial.levels
    np.testing.assert_allclose(
        np.concatenate(shared.damage), np.concatenate(serial.damage), rtol=1e-4, atol=1e-6
    )


def _two_models():
    torch.manual_seed(0)
    base, other = torch.nn.Linear(6, 4), torch.nn.Linear(6, 4)
    data = [(torch.randn(8, 6), torch.randint(0, 4, (8,))) for _ in range(3)]
    return base, other, data


def test_classification_damage_is_the_mean_kl_divergence_from_the_base():
    from seernet.data.task import CLASSIFICATION

    base, other, data = _two_models()
    damage = sensitivity._Damage(data, torch.device("cpu"), CLASSIFICATION, (other, base))
    with torch.no_grad():
        x = torch.cat([x for x, _ in data])
        p, q = base(x).double().softmax(1), other(x).double().softmax(1)
    expected = float((p * (p.log() - q.log())).sum(1).mean())
    assert damage(other, 1) == pytest.approx(expected, rel=1e-9) and expected > 0
    assert damage(base, 1) == pytest.approx(0.0, abs=1e-12)
    assert damage(other, 0) == pytest.approx(0.0, abs=1e-12)  # measured from its own base


def test_own_loss_damage_is_the_loss_increase():
    from seernet.data.task import Task

    base, other, data = _two_models()
    task = Task(loss=lambda out, y: (out[:, 0] - y.float()).pow(2).mean())
    damage = sensitivity._Damage(data, torch.device("cpu"), task, (base,))

    @torch.no_grad()
    def loss(m):  # the batches are of equal size
        return float(np.mean([float(task.criterion(m(x), y)) for x, y in data]))

    assert damage(other, 0) == pytest.approx(loss(other) - loss(base), rel=1e-6)
    assert damage.base_loss == pytest.approx(loss(base), rel=1e-6)
