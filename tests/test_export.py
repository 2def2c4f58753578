"""Exports: plain-torch copy, TorchScript without seernet, ONNX, packed integer weights, latency."""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from seernet.compression.export import (
    MAGIC,
    deployable,
    export_onnx,
    export_torchscript,
    load_packed,
    read_packed,
    save_packed,
)
from seernet.compression.packing import export_codes, unpack_codes
from seernet.compression.prune import prune_model
from seernet.compression.quant import calibrate_, quant_layers, quantize_, set_lsq_
from seernet.data.train import sgd
from seernet.errors import UserError
from seernet.latency.timing import latency_table, measure_latency
from seernet.models import create_model
from seernet.space.graph import build_space

# Runs in a fresh interpreter in which ``import seernet`` fails: the file must need torch only.


def small_net() -> nn.Sequential:
    """Odd channel counts (as pruning leaves them), a float-input first layer, a depthwise conv."""
    return nn.Sequential(
        nn.Conv2d(1, 7, 3, padding=1), nn.BatchNorm2d(7), nn.ReLU(),
        nn.Conv2d(7, 5, 3, stride=2, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(5, 5, 3, padding=1, groups=5), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3),
    )  # fmt: skip


@pytest.fixture(scope="module")
def quantized() -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """(float net, its calibrated fake-quant copy with mixed bits, inputs), eval mode."""
    torch.manual_seed(0)
    net = small_net().eval()
    x = torch.randn(16, 1, 12, 12)
    q = quantize_(copy.deepcopy(net), {"0": (8, 8), "3": (3, 4), "5": (2, 5), "8": (6, 8)})
    calibrate_(q, [x])
    return net, q.eval(), x


@torch.no_grad()
def test_deployable_reproduces_fake_quant_and_float_exactly(quantized):
    net, q, x = quantized
    assert not quant_layers(deployable(q))  # plain torch modules only
    assert torch.equal(deployable(q)(x), q(x))
    assert torch.equal(deployable(q, quantized=False)(x), net(x))


@torch.no_grad()
def test_torchscript_runs_without_seernet(quantized, tmp_path: Path, no_seernet_script):
    _, q, x = quantized
    export_torchscript(deployable(q), x[:2], tmp_path / "model.pt")
    torch.save({"x": x, "y": q(x)}, tmp_path / "io.pt")  # another batch size than traced
    out = subprocess.run([sys.executable, "-c", no_seernet_script, str(tmp_path / "model.pt"), str(tmp_path / "io.pt")],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert float(out.stdout.strip()) <= 1e-5


@torch.no_grad()
def test_onnx_is_valid_and_matches(quantized, tmp_path: Path, run_onnx):
    pytest.importorskip("onnx")
    _, q, x = quantized
    assert (
        export_onnx(deployable(q), x[:1], tmp_path / "model.onnx") is None
    )  # includes check_model
    y = run_onnx(tmp_path / "model.onnx", x[:5].numpy())  # dynamic batch
    np.testing.assert_allclose(y, q(x[:5]).numpy(), atol=1e-5, rtol=0)


def test_onnx_skipped_with_a_note_without_onnx(quantized, tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    _, q, x = quantized
    note = export_onnx(deployable(q), x[:1], tmp_path / "model.onnx")
    assert "seernet[onnx]" in note and not (tmp_path / "model.onnx").exists()


def test_packed_file_holds_bit_packed_codes(quantized, tmp_path: Path):
    _, q, _ = quantized
    save_packed(q, tmp_path / "p.bin", {"any": "meta"})
    header, tensors = read_packed(tmp_path / "p.bin")
    assert header["meta"] == {"any": "meta"}
    for name, layer in quant_layers(q).items():
        codes = export_codes(layer)
        packed, bits = tensors[f"{name}.weight"]
        assert bits == layer.w_bits and packed.numel() == -(-codes.weight_codes.numel() * bits // 8)
        assert torch.equal(unpack_codes(packed, bits, codes.weight_codes.shape), codes.weight_codes)
        assert torch.equal(tensors[f"{name}.weight_scale"], codes.weight_scale)
    assert torch.equal(tensors["1.running_var"], q[1].running_var)


def test_corrupt_packed_file_is_a_user_error(quantized, tmp_path: Path):
    _, q, _ = quantized
    save_packed(q, tmp_path / "p.bin", {})
    raw = (tmp_path / "p.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(raw[:-3])
    (tmp_path / "foreign.bin").write_bytes(b"PK" + raw[2:])
    (tmp_path / "header.bin").write_bytes(raw[:14] + bytes(8) + raw[22:])
    assert raw.startswith(MAGIC)
    with pytest.raises(UserError, match="corrupt header"):
        read_packed(tmp_path / "header.bin")
    with pytest.raises(UserError, match="truncated"):
        read_packed(tmp_path / "cut.bin")
    with pytest.raises(UserError, match="not a seernet packed model"):
        read_packed(tmp_path / "foreign.bin")


def test_packed_round_trip_rebuilds_a_pruned_resnet(tmp_path: Path):
    """From the file alone: architecture from the registry + policy, every tensor from the file."""
    torch.manual_seed(0)
    base = create_model("resnet20", 10, 1)
    space = build_space(base, (1, 1, 28, 28))
    policy = space.decode(
        np.linspace(0.0, 1.0, space.dim)
    )  # every group pruned differently, mixed bits
    x = torch.randn(8, 1, 28, 28)
    model = quantize_(prune_model(base, space, policy), policy.bits)
    calibrate_(model, [torch.randn(32, 1, 28, 28)])
    meta = {"model": "resnet20", "num_classes": 10, "in_channels": 1, "input_shape": [1, 1, 28, 28],
            "choices": asdict(space.choices), "space_fingerprint": space.fingerprint, "policy": policy.to_json()}  # fmt: skip
    save_packed(model, tmp_path / "packed.bin", meta)
    with torch.no_grad():
        err = (load_packed(tmp_path / "packed.bin")(x) - model.eval()(x)).abs().max().item()
    assert err <= 1e-5


def test_latency_records_runs_and_threads():
    net = small_net()
    r = measure_latency(net, (1, 1, 12, 12), batch_size=4, runs=3, warmup=1)
    assert r["runs"] == 3 and 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    table = latency_table({"a": net}, (1, 1, 12, 12), (1, 2), runs=2)
    assert table["threads"] == torch.get_num_threads() and set(table["models"]["a"]) == {"1", "2"}
    with pytest.raises(ValueError):
        measure_latency(net, (1, 1, 12, 12), 1, runs=0)


def test_exports_bit_exact_after_lsq_fine_tuning(tmp_path: Path):
    """Learned (LSQ) step sizes are exported as the forward uses them: every export is exact."""
    torch.manual_seed(0)
    base = create_model("resnet20", 10, 1)
    space = build_space(base, (1, 1, 28, 28))
    policy = space.decode(np.linspace(1.0, 0.0, space.dim))
    model = quantize_(prune_model(base, space, policy), policy.bits)
    calibrate_(model, [torch.randn(32, 1, 28, 28)])
    before = {
        n: (q.weight_scale.detach().clone(), q.act_scale.item())
        for n, q in quant_layers(model).items()
    }
    set_lsq_(model, True)
    opt = sgd(model, lr=0.002, weight_decay=5e-4)  # small: random weights, random labels
    model.train()
    for _ in range(3):
        loss = nn.functional.cross_entropy(
            model(torch.randn(16, 1, 28, 28)), torch.randint(0, 10, (16,))
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    set_lsq_(model, False)
    model.eval()
    moved = [n for n, q in quant_layers(model).items()
             if not torch.equal(q.weight_scale.detach(), before[n][0]) and q.act_scale.item() != before[n][1]]  # fmt: skip
    assert len(moved) == len(before)  # every weight and activation step was learned
    x = torch.randn(8, 1, 28, 28)
    meta = {"model": "resnet20", "num_classes": 10, "in_channels": 1, "input_shape": [1, 1, 28, 28],
            "choices": asdict(space.choices), "space_fingerprint": space.fingerprint, "policy": policy.to_json()}  # fmt: skip
    save_packed(model, tmp_path / "packed.bin", meta)
    export_torchscript(deployable(model), x[:2], tmp_path / "model.pt")
    with torch.no_grad():
        ref = model(x)
        assert torch.isfinite(ref).all()
        assert torch.equal(deployable(model)(x), ref)
        assert torch.equal(load_packed(tmp_path / "packed.bin")(x), ref)
        assert torch.equal(torch.jit.load(str(tmp_path / "model.pt"))(x), ref)
