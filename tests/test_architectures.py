"""Architecture definitions nobody here wrote, through the engine (issue #23).

Each is built from timm's or torchvision's own definition with random weights (never
downloaded) and, on small inputs (64x64; 64x48 for EfficientNet-B0): the policy space; one
random policy, seeded per architecture, with a third of its coordinates at their lowest choice
(fewest channels, fewest bits); the model pruned, quantized and calibrated; its forward; the
space's analytic MACs against ``torch.utils.flop_counter`` on the pruned float model, and its
analytic parameter count against the pruned model's; and the QDQ export run in ONNX Runtime:
with float residual branches it gives the simulation's outputs, and as ``compress`` writes it
(int8 residual branches, checked on six architectures with residual adds) it runs.

What the space leaves alone is in ``space.notes`` and checked to be what it should be: the
channels kept around ShuffleNet's channel shuffle, grouped-conv and GroupNorm blocks pruned
whole, GhostNet's tied channels removed together, timm's Conv2dSame layers left in float, no
layer pruned to zero channels. On BatchNorm models, channels zeroed through a whole group are
exactly those pruning removes (the pruned model computes the same outputs), and the packed and
TorchScript exports reproduce the model bit for bit.

Every architecture listed here passes; none is excluded or skipped (timm and onnxruntime are
imported, not skipped when missing).
"""

from __future__ import annotations

import dataclasses
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort  # the onnx extra
import pytest
import timm  # the test extra (pip install -e '.[test]'; scripts/setup.sh installs it)
import torch
import torchvision.models as tvm
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from seernet.compression.export import deployable, export_torchscript, load_packed, save_packed
from seernet.compression.onnx_qdq import export_qdq
from seernet.compression.prune import prune_model
from seernet.compression.quant import calibrate_, quant_layers, quantize_
from seernet.space.costs import CostModel
from seernet.space.graph import build_space, named_groups
from seernet.space.policy import SpaceChoices

SQUARE = (1, 3, 64, 64)


def _timm(name: str) -> Callable[[], nn.Module]:
    return lambda: timm.create_model(name, pretrained=False, num_classes=10)


def _tv(name: str, **kw) -> Callable[[], nn.Module]:
    return lambda: getattr(tvm, name)(weights=None, num_classes=10, **kw)


# name -> (constructor, input shape)
ARCHITECTURES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    # ResNet / ResNeXt (grouped 3x3 convs) / RegNet (grouped convs, SE)
    "timm/resnet10t": (_timm("resnet10t"), SQUARE),
    "torchvision/resnet18+GroupNorm": (
        _tv("resnet18", norm_layer=lambda c: nn.GroupNorm(8, c)),
        SQUARE,
    ),
    "timm/resnext26ts": (_timm("resnext26ts"), SQUARE),
    "torchvision/regnet_x_400mf": (_tv("regnet_x_400mf"), SQUARE),
    "timm/regnety_002": (_timm("regnety_002"), SQUARE),
    # MobileNets, EfficientNet, MnasNet (depthwise convs, SE, hard-swish)
    "torchvision/mobilenet_v2": (_tv("mobilenet_v2"), SQUARE),
    "torchvision/mobilenet_v3_small": (_tv("mobilenet_v3_small"), SQUARE),
    "timm/mobilenetv3_small_050": (_timm("mobilenetv3_small_050"), SQUARE),
    # TF-ported: stride-2 convs are timm's Conv2dSame (padding in its own forward): kept in float
    "timm/tf_mobilenetv3_small_minimal_100": (_timm("tf_mobilenetv3_small_minimal_100"), SQUARE),
    "torchvision/efficientnet_b0 (64x48)": (_tv("efficientnet_b0"), (1, 3, 64, 48)),
    "torchvision/mnasnet0_5": (_tv("mnasnet0_5"), SQUARE),
    # Concatenations: DenseNet, GoogLeNet (inception branches), DLA (aggregation nodes)
    "torchvision/densenet121": (_tv("densenet121"), SQUARE),
    "torchvision/googlenet": (_tv("googlenet", aux_logits=False, init_weights=True), SQUARE),
    "timm/dla46_c": (_timm("dla46_c"), SQUARE),
    # ConvNeXt V2: LayerNorm and Linear on channels-last features, global response norm
    "timm/convnextv2_atto": (_timm("convnextv2_atto"), SQUARE),
    # GhostNet (a depthwise half concatenated: tied channels), ReXNet (partial-channel residuals)
    "timm/ghostnet_100": (_timm("ghostnet_100"), SQUARE),
    "timm/rexnet_100": (_timm("rexnet_100"), SQUARE),
    # ShuffleNetV2 (chunk + channel shuffle), SqueezeNet (a conv classifier)
    "torchvision/shufflenet_v2_x0_5": (_tv("shufflenet_v2_x0_5"), SQUARE),
    "torchvision/squeezenet1_1": (_tv("squeezenet1_1"), SQUARE),
}


# The int8-residual export (compress's default; a second export, so a few of each family
# with residual adds): ResNeXt, RegNet, MobileNetV3, ConvNeXt V2, GhostNet, ReXNet.
INT8_RESIDUALS = {
    "timm/resnext26ts",
    "torchvision/regnet_x_400mf",
    "torchvision/mobilenet_v3_small",
    "timm/convnextv2_atto",
    "timm/ghostnet_100",
    "timm/rexnet_100",
}


def conv_linear_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of convolutions and matrix products, by ``FlopCounterMode`` (which
    counts 2 FLOPs per MAC and has formulas for those ops only)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(shape))
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


def ort_session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def random_policy(space, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.random(space.dim)
    x[rng.random(space.dim) < 1 / 3] = 0.0  # the lowest choices: fewest channels, 2 bits
    return space.decode(x)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_architecture_compresses_and_exports(arch: str, tmp_path: Path) -> None:
    make, shape = ARCHITECTURES[arch]
    seed = zlib.crc32(arch.encode())
    torch.manual_seed(seed)
    model = make().eval()
    space = build_space(model, shape, SpaceChoices())
    assert space.n_groups > 0
    costs = CostModel(space)
    policy = random_policy(space, seed)

    pruned = prune_model(model, space, policy)
    for name, m in pruned.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            assert m.weight.numel() > 0, f"{name} pruned to nothing: {tuple(m.weight.shape)}"
    assert costs.of_policy(policy)["flops"] == conv_linear_macs(pruned, shape)
    assert costs.of_policy(policy)["params"] == sum(p.numel() for p in pruned.parameters())

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(8, *shape[1:], generator=gen)
    calib = torch.randn(16, *shape[1:], generator=gen)
    quantize_(pruned, policy.bits)
    assert set(quant_layers(pruned)) == {ly.name for ly in space.quant_layers}
    calibrate_(pruned, [calib])
    with torch.no_grad():
        y = pruned(x)
    assert y.shape == (8, 10) and torch.isfinite(y).all()

    # The QDQ file computes what the simulation does (residual branches in float) ...
    exact, as_compress = tmp_path / "float.qdq.onnx", tmp_path / "int8.qdq.onnx"
    export_qdq(pruned, x[:2], exact, residuals="float")
    (out,) = ort_session(exact).run(None, {"input": x.numpy()})
    scale = y.abs().max().item()
    np.testing.assert_allclose(out, y.numpy(), rtol=0, atol=1e-3 * scale + 1e-12)
    # ... and as compress writes it by default (residual branches in int8, calibrated in ORT)
    if arch in INT8_RESIDUALS:
        export_qdq(pruned, x[:2], as_compress, residuals="int8", calibration=calib)
        (out,) = ort_session(as_compress).run(None, {"input": x.numpy()})
        assert out.shape == (8, 10) and np.isfinite(out).all()


def test_what_the_space_leaves_alone_is_noted() -> None:
    """ShuffleNet's shuffled channels are kept (a note each); ResNeXt's grouped blocks, GroupNorm's
    blocks and GhostNet's tied channels are pruned whole; timm's TF-ported Conv2dSame layers
    stay in float."""
    shuffle = build_space(tvm.shufflenet_v2_x0_5(weights=None).eval(), SQUARE)
    assert shuffle.notes and all("kept" in n for n in shuffle.notes)
    kept = {n.split()[2] for n in shuffle.notes}
    assert "stage2.0.branch1.2" in kept and not kept & {g.name for g in shuffle.groups}
    assert "stage2.0.branch2.3" in {g.name for g in shuffle.groups}  # inside a branch: pruned

    resnext = build_space(timm.create_model("resnext26ts", pretrained=False).eval(), SQUARE)
    grouped = {
        ly.name: ly.conv_groups for ly in resnext.layers if ly.kind == "conv" and ly.conv_groups > 1
    }
    assert grouped
    for g in resnext.groups:
        if g.name.replace("conv1_1x1", "conv2_kxk") in grouped:  # feeds a grouped conv
            groups = grouped[g.name.replace("conv1_1x1", "conv2_kxk")]
            assert all(k % groups == 0 for k in g.keep), g

    # GhostNet: a shortcut conv's channel c and c + C/2 reach the same primary-conv channel
    ghost = timm.create_model("ghostnet_100", pretrained=False).eval()
    _, groups = named_groups(ghost, SQUARE)
    tied = {name: group.plan for name, group in groups if group.plan.unit > 1}
    assert "blocks.7.0.shortcut.2" in tied and tied["blocks.7.0.shortcut.2"].unit == 2
    assert all(len(set(map(len, plan.units))) == 1 for plan in tied.values())
    # Without pruning choices, tied groups leave the space (a note each) and pruning agrees.
    fixed = build_space(ghost, SQUARE, SpaceChoices(max_prune=0.0))
    assert not set(tied) & {g.name for g in fixed.groups}
    assert sum("no choice in whole units" in n for n in fixed.notes) == len(tied)
    prune_model(ghost, fixed, fixed.full_policy())
    # GroupNorm(8, C): whole blocks of 8
    gn = tvm.resnet18(weights=None, norm_layer=lambda c: nn.GroupNorm(8, c)).eval()
    assert all(k % 8 == 0 for g in build_space(gn, SQUARE).groups for k in g.keep)

    tf = build_space(_timm("tf_mobilenetv3_small_minimal_100")().eval(), SQUARE)
    floats = [ly for ly in tf.layers if ly.kind == "conv" and not ly.quantized]
    assert floats and all("stays in float" in n for n in tf.notes if "float" in n)
    assert {ly.name for ly in floats}.isdisjoint(ly.name for ly in tf.quant_layers)


ZERO_PRESERVING = [  # BatchNorm models whose channel-wise ops map 0 to 0 (no LayerNorm/GroupNorm)
    "timm/resnext26ts",
    "timm/regnety_002",
    "timm/ghostnet_100",
    "timm/dla46_c",
    "timm/rexnet_100",
    "torchvision/mobilenet_v3_small",
]


@pytest.mark.parametrize("arch", ZERO_PRESERVING)
def test_pruning_removes_exactly_the_coupled_channels(arch: str) -> None:
    """Channels made dead in every layer of their group (weights, biases and BatchNorm affine
    zeroed) are the ones pruning removes, and the pruned model computes what the dead-channel
    model does: the groups, grouped-conv blocks and tied channels couple the right channels."""
    make, shape = ARCHITECTURES[arch]
    seed = zlib.crc32(arch.encode())
    torch.manual_seed(seed)
    model = make().eval()
    space = build_space(model, shape)
    policy = random_policy(space, seed)
    rng = np.random.default_rng(seed)
    dead: dict[str, list[int]] = {}
    dg, groups = named_groups(model, shape)
    with torch.no_grad():
        for name, group in groups:
            units = group.plan.units or [(i,) for i in range(len(group[0].idxs))]
            n = (len(group[0].idxs) - policy.channels[name]) // len(units[0])
            dead[name] = sorted(i for u in rng.permutation(len(units))[:n] for i in units[u])
            if not dead[name]:
                continue
            root, handler = group[0].dep.target.module, group[0].dep.handler
            for item in dg.get_pruning_group(root, handler, dead[name]):
                m, idx = item.dep.target.module, torch.as_tensor(item.idxs)
                if isinstance(m, nn.Conv2d | nn.Linear) and dg.is_out_channel_pruning_fn(
                    item.dep.handler
                ):
                    m.weight[idx] = 0
                    if m.bias is not None:
                        m.bias[idx] = 0
                elif isinstance(m, nn.BatchNorm2d):
                    m.weight[idx], m.bias[idx] = 0, 0

    def criterion(group, name):
        score = torch.ones(len(group[0].idxs))
        score[dead[name]] = 0
        return score

    pruned = prune_model(model, space, policy, criterion)
    x = torch.randn(2, *shape[1:], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "arch", ["timm/resnext26ts", "timm/ghostnet_100", "timm/tf_mobilenetv3_small_minimal_100"]
)
def test_packed_and_torchscript_exports_reproduce_the_model(arch: str, tmp_path: Path) -> None:
    """Grouped blocks, tied channels and float layers survive ``packed.bin`` (rebuilt from the
    uncompressed definition) and TorchScript bit for bit."""
    make, shape = ARCHITECTURES[arch]
    seed = zlib.crc32(arch.encode())
    torch.manual_seed(seed)
    model = make().eval()
    space = build_space(model, shape)
    policy = random_policy(space, seed)
    compressed = quantize_(prune_model(model, space, policy), policy.bits)
    x = torch.randn(4, *shape[1:], generator=torch.Generator().manual_seed(seed))
    calibrate_(compressed, [x])
    meta = {
        "model": arch, "num_classes": 10, "in_channels": shape[1], "input_shape": list(shape),
        "choices": dataclasses.asdict(space.choices), "space_fingerprint": space.fingerprint,
        "policy": policy.to_json(),
    }  # fmt: skip
    save_packed(compressed, tmp_path / "packed.bin", meta)
    export_torchscript(deployable(compressed), x[:2], tmp_path / "model.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        script = torch.jit.load(str(tmp_path / "model.pt"))
    with torch.no_grad():
        y = compressed(x)
        assert torch.equal(load_packed(tmp_path / "packed.bin", arch=model)(x), y)
        assert torch.equal(script(x), y)


def test_a_failure_inside_torch_pruning_keeps_channels_not_refuses_the_model(monkeypatch):
    """A trace Torch-Pruning cannot make leaves a quantize-only space; a group search that fails
    keeps that group's channels; each with a note, and the model still prunes and quantizes."""
    import seernet.space.graph as graph

    model = tvm.squeezenet1_1(weights=None, num_classes=10).eval()
    full = build_space(model, SQUARE)
    victim = full.groups[3].name
    original = graph.SeerGraph.get_pruning_group

    def failing(self, module, fn, idxs):
        if self._module2name[module] == victim and len(idxs) == self.get_out_channels(module):
            raise RuntimeError("simulated")
        return original(self, module, fn, idxs)

    monkeypatch.setattr(graph.SeerGraph, "get_pruning_group", failing)
    space = build_space(model, SQUARE)
    assert [g.name for g in space.groups] == [g.name for g in full.groups if g.name != victim]
    assert space.notes == [
        f"channels of {victim} kept: Torch-Pruning cannot group them (RuntimeError)"
    ]
    monkeypatch.undo()

    def untraceable(model, example):
        raise RuntimeError("simulated")

    monkeypatch.setattr(graph, "dependency_graph", untraceable)
    space = build_space(model, SQUARE)
    assert space.n_groups == 0 and len(space.quant_layers) == len(full.quant_layers)
    assert space.notes[0].startswith("no channel is pruned: Torch-Pruning cannot trace the model")
    policy = space.decode(np.zeros(space.dim))
    pruned = quantize_(prune_model(model, space, policy), policy.bits)
    calibrate_(pruned, [torch.randn(4, *SQUARE[1:])])
    assert CostModel(space).of_policy(policy)["flops"] == conv_linear_macs(pruned, SQUARE)


class _UpsamplingNet(nn.Module):
    """A small segmentation-style net: a transposed conv upsamples into a skip connection."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32)
        self.up, self.b3 = nn.ConvTranspose2d(32, 16, 2, stride=2), nn.BatchNorm2d(16)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b1(self.c1(x)))
        y = torch.relu(self.b2(self.c2(x)))
        return self.head(torch.relu(self.b3(self.up(y))) + x)


class _SharedConvNet(nn.Module):
    """One conv module called twice per forward (weights shared between two depths)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.shared = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.c3, self.fc = nn.Conv2d(16, 24, 3, padding=1), nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.shared(torch.relu(self.shared(torch.relu(self.c1(x))))))
        return self.fc(torch.relu(self.c3(x)).mean((2, 3)))


@pytest.mark.parametrize("make", [_UpsamplingNet, _SharedConvNet])
def test_transposed_convs_and_modules_called_twice_are_counted(make) -> None:
    """A ConvTranspose2d's MACs and (pruned) parameters count, and it is noted as kept in
    float; a module called twice costs twice: analytic costs equal the pruned model's."""
    from seernet.space.mac_counter import count_macs_params

    torch.manual_seed(0)
    model, shape = make().eval(), (1, 3, 32, 32)
    space = build_space(model, shape, SpaceChoices())
    costs = CostModel(space)
    assert space.n_groups > 0
    if make is _UpsamplingNet:
        assert any(n.startswith("up (ConvTranspose2d) stays in float") for n in space.notes)
    for seed in range(3):
        policy = random_policy(space, seed)
        pruned = prune_model(model, space, policy)
        spent = costs.of_policy(policy)
        assert spent["flops"] == conv_linear_macs(pruned, shape)
        assert (spent["flops"], spent["params"]) == count_macs_params(pruned, shape)
        quantize_(pruned, policy.bits)
        calibrate_(pruned, [torch.randn(4, *shape[1:])])
        with torch.no_grad():
            assert torch.isfinite(pruned(torch.randn(2, *shape[1:]))).all()
