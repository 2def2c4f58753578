"""QDQ ONNX export run in ONNX Runtime: integer form, agreement with the simulation, refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seernet.cli.main import main
from seernet.compression.onnx_qdq import export_qdq, fine_factor, qdq_module
from seernet.compression.prune import prune_model
from seernet.compression.quant import calibrate_, quant_layers, quantize_, weight_qrange
from seernet.errors import UserError
from seernet.models import create_model
from seernet.space.graph import build_space

SHAPE = (1, 1, 28, 28)


@pytest.fixture(scope="module")
def policy_model() -> tuple[torch.nn.Module, torch.Tensor]:
    """A pruned ResNet-20 with mixed bits 2..8 and non-trivial BatchNorm (some negative gammas)."""
    torch.manual_seed(0)
    base = create_model("resnet20", 10, 1).eval()
    space = build_space(base, SHAPE)
    policy = space.decode(
        np.linspace(0.0, 1.0, space.dim)
    )  # every group pruned differently, mixed bits
    model = prune_model(base, space, policy)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.normal_()  # negative factors: the fold must flip codes, not scales
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    quantize_(model, policy.bits)
    calibrate_(model, [torch.randn(32, *SHAPE[1:])])
    return model.eval(), torch.randn(64, *SHAPE[1:], generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def qdq_file(policy_model, tmp_path_factory) -> Path:
    pytest.importorskip("onnx")
    path = tmp_path_factory.mktemp("qdq") / "model.qdq.onnx"
    export_qdq(policy_model[0], policy_model[1][:2], path)
    return path


@torch.no_grad()
def test_qdq_module_computes_the_simulation_bit_for_bit(policy_model):
    """The module exported (codes on finer grids included) gives the fake-quant model's outputs exactly."""
    model, x = policy_model
    assert torch.equal(qdq_module(model)(x), model(x))


def test_weights_are_integer_codes_in_their_bit_range_and_bn_is_folded(
    policy_model, qdq_file: Path
):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(qdq_file)).graph
    ops = [n.op_type for n in graph.node]
    assert "BatchNormalization" not in ops and ops.count("QuantizeLinear") >= 1
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    layers = quant_layers(policy_model[0])
    seen = set()
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        assert producer[node.input[0]].op_type == "DequantizeLinear"  # a quantized input
        if node.input[1] in inits:  # run in float: float32 codes x scales (the next test)
            seen.add(node.input[1].split(".codes")[0])
            continue
        dq = producer[node.input[1]]
        assert dq.op_type == "DequantizeLinear"
        codes = inits[dq.input[0]]
        name = dq.input[0].split(".codes")[0]  # "<layer>.codes", "_bn" after the fold
        lo, hi = weight_qrange(layers[name].w_bits)
        k = fine_factor(
            lo, hi, signed=True
        )  # b-bit codes stored times 2^(8-b): still only 2^b - 1 levels
        assert codes.dtype == np.int8 and (codes % k == 0).all() and np.abs(codes // k).max() <= hi
        assert (inits[dq.input[1]] > 0).all()  # per-channel scales, positive after the fold
        seen.add(name)
    assert seen == set(layers)


def _weights(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """Conv/Gemm node name -> ("float", its weight) or ("dq", float32 codes x scales)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    out = {}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        if node.input[1] in inits:
            out[node.name] = ("float", inits[node.input[1]])
            continue
        codes, scale = (inits[i] for i in producer[node.input[1]].input[:2])
        shape = (-1, *[1] * (codes.ndim - 1))
        out[node.name] = ("dq", codes.astype(np.float32) * scale.astype(np.float32).reshape(shape))
    return out


def test_residual_branches_hold_their_dequantized_weights_bit_for_bit(
    policy_model, qdq_file: Path, tmp_path: Path
):
    """ORT never folds a DequantizeLinear: the exact form stores the float residual stream's weights
    as float32, exactly the values DequantizeLinear gives in the int8-residual form."""
    pytest.importorskip("onnxruntime")
    model, x = policy_model
    export_qdq(model, x[:2], tmp_path / "int8.onnx", residuals="int8", calibration=x[:16])
    exact, integer = _weights(qdq_file), _weights(tmp_path / "int8.onnx")
    assert exact.keys() == integer.keys()
    floats = {n for n, (kind, _) in exact.items() if kind == "float"}
    # ResNet-20: the 9 + 2 residual-branch convs (second convs, 1x1 shortcuts) and, in both forms,
    # the stem (its output also feeds an identity shortcut); the linear layer keeps its codes.
    branches = floats - {"/conv1/Conv"}
    assert len(branches) == 11 and all(
        n.endswith(("conv2/Conv", "shortcut.0/Conv")) for n in branches
    )
    assert {n for n, (kind, _) in integer.items() if kind == "float"} == {"/conv1/Conv"} < floats
    for name in branches:
        assert integer[name][0] == "dq" and np.array_equal(exact[name][1], integer[name][1])


def test_onnxruntime_fuses_integer_convs_and_agrees_with_the_simulation(
    policy_model, qdq_file: Path, tmp_path: Path
):
    ort = pytest.importorskip("onnxruntime")
    import onnx

    model, x = policy_model
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.optimized_model_filepath, opts.log_severity_level = (
        1,
        str(tmp_path / "opt.onnx"),
        3,
    )
    sess = ort.InferenceSession(str(qdq_file), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    assert "QLinearConv" in {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
    with torch.no_grad():
        ref = model(x).numpy()
    # Integer kernels requantize in another order than the float simulation: an activation within
    # float rounding of a code boundary can land on the neighbouring code; top-1 must agree.
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.95
    assert np.median(np.abs(got - ref).max(1)) <= 0.05 * np.abs(ref).max()


def test_exact_form_runs_float_convs_on_constant_weights_and_computes_the_simulation(
    policy_model, qdq_file: Path, tmp_path: Path
):
    """The exact form (float residual branches) in ORT: the convs it runs in float have constant
    weights (prepacked, blocked layout), and most outputs equal the simulation's bit for bit."""
    ort = pytest.importorskip("onnxruntime")
    import onnx

    model, x = policy_model
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    sess = ort.InferenceSession(str(qdq_file), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    graph = onnx.load(str(tmp_path / "opt.onnx")).graph
    inits = {t.name for t in graph.initializer}
    # 12 float convs (the stem and the residual branches), all on constant weights.
    float_convs = [n for n in graph.node if n.op_type in ("Conv", "FusedConv")]
    assert len(float_convs) == 12 and all(n.input[1] in inits for n in float_convs)
    with torch.no_grad():
        ref = model(x).numpy()
    # Float sums in another order can move an activation at a code boundary to the next code, so
    # not every row is exact; with 8-bit residual branches about one row in ten was. The order
    # ORT's float kernels sum in depends on the CPU (bit-exact rows on one machine, last-bit
    # differences on another), so "exact" here is float32 rounding of the logits' scale.
    assert (got.argmax(1) == ref.argmax(1)).all()
    rounding = 1e-6 * np.abs(ref).max()
    assert (np.abs(got - ref).max(1) <= rounding).mean() >= 0.5


def test_missing_onnxruntime_is_one_clear_line(monkeypatch, tmp_path: Path, capsys):
    from seernet.compression.ort_runtime import require_onnxruntime

    monkeypatch.setitem(
        sys.modules, "onnxruntime", None
    )  # import onnxruntime now raises ImportError
    with pytest.raises(UserError, match="onnxruntime is not installed"):
        require_onnxruntime()
    assert main(["profile-latency", "--workdir", str(tmp_path), "--runtime", "onnxruntime"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        "onnxruntime is not installed" in err
        and "pip install" in err
        and len(err.splitlines()) == 1
    )


def test_unknown_runtime_is_one_clear_line(tmp_path: Path, capsys):
    assert main(["profile-latency", "--workdir", str(tmp_path), "--runtime", "tensorrt"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        "unknown runtime 'tensorrt'" in err and "onnxruntime" in err and len(err.splitlines()) == 1
    )


def test_ort_latency_table_states_threads_and_load(qdq_file: Path):
    pytest.importorskip("onnxruntime")
    from seernet.compression.ort_runtime import ort_latency_table

    table = ort_latency_table({"qdq": qdq_file}, SHAPE, (1, 3), runs=2, threads=1)
    assert (
        table["runtime"] == "onnxruntime"
        and table["threads"] == 1
        and table["batch_sizes"] == [1, 3]
    )
    assert set(table["load_average_1min"]) == {"before", "after"}
    assert all(table["models"]["qdq"][b]["median_ms"] > 0 for b in ("1", "3"))


def test_models_timed_together_take_turns_one_run_per_round():
    """Interleaved timing: every round gives each model a turn (an untimed run, then the
    timed one), after the warm-up runs, each round starting one model later; each model gets
    exactly ``runs`` times (a drifting machine then hits them alike, and so does the first
    turn of a round)."""
    from seernet.compression.ort_runtime import interleaved_times

    calls: list[str] = []

    class Fake:  # the two methods of an InferenceSession that timing uses
        def __init__(self, name: str) -> None:
            self.name = name

        def get_inputs(self):
            return [type("Input", (), {"name": "input"})()]

        def run(self, outputs, feed):
            assert outputs is None and set(feed) == {"input"}
            calls.append(self.name)

    times = interleaved_times({"a": Fake("a"), "b": Fake("b")}, np.zeros(1), runs=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "a", "b", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert all(t >= 0 for v in times.values() for t in v)
    with pytest.raises(ValueError, match="runs >= 1"):
        interleaved_times({"a": Fake("a")}, np.zeros(1), runs=0, warmup=0)


def test_paired_ratio_cancels_drift_between_rounds():
    """A model at 0.6 of the reference in every round reads 0.6 exactly, however the
    machine's speed moves from round to round; unpaired runs are refused."""
    from seernet.compression.ort_runtime import paired_ratio

    speed = np.random.default_rng(0).uniform(1.0, 2.0, 9)  # each round's slowdown
    assert paired_ratio(list(0.6 * 0.3 * speed), list(0.3 * speed)) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="paired"):
        paired_ratio([1.0], [1.0, 2.0])


def test_int8_residual_branches_run_every_block_conv_on_integer_kernels(
    policy_model, tmp_path: Path
):
    ort = pytest.importorskip("onnxruntime")
    import onnx

    model, x = policy_model
    with pytest.raises(ValueError, match="calibration"):
        export_qdq(model, x[:2], tmp_path / "m.onnx", residuals="int8")
    export_qdq(model, x[:2], tmp_path / "m.onnx", residuals="int8", calibration=x[:16])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.optimized_model_filepath, opts.log_severity_level = (
        1,
        str(tmp_path / "opt.onnx"),
        3,
    )
    got = ort.InferenceSession(
        str(tmp_path / "m.onnx"), opts, providers=["CPUExecutionProvider"]
    ).run(None, {"input": x.numpy()})[0]
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    # ResNet-20: 21 convs (2 of them 1x1 shortcuts); only the stem (its output also feeds the identity
    # shortcut) stays float.
    assert ops.count("QLinearConv") == 20
    with torch.no_grad():
        assert (
            got.argmax(1) == model(x).numpy().argmax(1)
        ).mean() >= 0.9  # an approximation: 8-bit branches
