"""Deployment in ONNX Runtime: the QDQ models' speed-ups, and LAP's latency model for ORT.

(a) For every ``seernet compress`` output of ``--ws``: both QDQ forms, rebuilt from its
    ``packed.bin`` as compress exports them (``--qdq-residuals float``, the exact form and the
    default, and ``int8``), timed in ORT at batch 1 and 64 together with the float base and
    float pruned models: the speed-ups over the float base and their ratio to the FLOPs
    reduction (base FLOPs / model FLOPs); each form's test accuracy in ORT and top-1 agreement
    with seernet's simulation (cached in ``--out``).
(b) The latency model: ``seernet profile-latency --runtime onnxruntime`` (batch 1, 1 thread),
    then predicted vs measured ORT latency of the QDQ model of every distinct policy (channels
    and bits: low-bit inputs add small requantization ops) found in the policy folders.
    Resumable: measured models are kept in ``--out``.
(c) int4 storage: one QDQ conv with int8 vs int4 weights (opset 21), and the ops ORT's
    optimizer turns each into (an integer QLinearConv, or a float Conv on dequantized weights).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_deploy_ort.py --parts abc
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from seernet.latency.table import load_table, measured_latency_ms, predicted_latency_ms
from seernet.space.policy import Policy
from seernet.steps.context import RunContext
from seernet.tables import format_table
from seernet.workspace.folder import Workspace

POLICY_DIRS = (
    "benchmarks/out/ws-deploy/policies",
    "benchmarks/out/ws-e2e/policies",
    "benchmarks/out/e2e/ws/policies",
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--ws", default="benchmarks/out/ws-deploy", help="workspace with compressed/ and policies/"
    )
    p.add_argument("--policy-dirs", nargs="*", default=list(POLICY_DIRS))
    p.add_argument("--out", default="benchmarks/out/deploy-ort", help="resumable results of (b)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per measured model in (b)")
    p.add_argument("--parts", default="abc")
    p.add_argument(
        "--lap-ws",
        help="workspace of (b)'s latency table (default: --ws; another copy for another batch)",
    )
    p.add_argument("--lap-batch", type=int, default=1, help="batch size of (b)'s table and timings")
    return p.parse_args()


def load() -> str:
    return f"1-min load {os.getloadavg()[0]:.2f}"


# --- (a) --------------------------------------------------------------------------------------
FORMS = ("float", "int8")  # --qdq-residuals: the exact form (compress's default) and 8-bit branches


def qdq_forms(ctx: RunContext, folder: Path, runs: int, out: Path) -> dict:
    """Both QDQ forms of a compressed model, rebuilt from packed.bin as ``seernet compress`` exports
    them: ORT latency at batch 1 and 64 (timed together with the float base and float pruned
    models), test accuracy and top-1 agreement with the simulation (cached)."""
    from seernet.compression.export import deployable, load_packed
    from seernet.compression.onnx_qdq import export_qdq
    from seernet.compression.ort_runtime import (
        float_onnx,
        ort_latency_table,
        predictions,
        session,
        torch_predictions,
    )
    from seernet.data.loaders import batches

    cache = out / f"{folder.name}.forms.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    out.mkdir(parents=True, exist_ok=True)
    model = load_packed(folder / "packed.bin")  # the simulation, bit for bit
    m = json.loads((folder / "metrics.json").read_text())["settings"]
    calib = batches(ctx.splits.train, m["batch_size"], shuffle=True, seed=m["seed"])
    images = torch.cat([b[0] for b, _ in zip(calib, range(2), strict=False)])  # as compress does
    shape = ctx.space.input_shape
    variants = {"base (float)": float_onnx(ctx.model, shape),
                "compressed (float)": float_onnx(deployable(model, quantized=False), shape)}  # fmt: skip
    for form in FORMS:
        variants[form] = out / f"{folder.name}.qdq-{form}-residuals.onnx"
        export_qdq(model, torch.zeros((2, *shape[1:])), variants[form], form, images)
    lat = ort_latency_table(variants, shape, (1, 64), runs, threads=1)
    sim = torch_predictions(model, ctx.splits.test, torch.device("cpu"))
    result = {"latency": lat}
    for form in FORMS:
        ort_pred, labels = predictions(session(variants[form], 1), ctx.splits.test)
        result[form] = {"test_accuracy": 100 * float((ort_pred == labels).mean()),
                        "top1_agreement": 100 * float((ort_pred == sim).mean()),
                        "simulation_test_accuracy": 100 * float((sim == labels).mean()),
                        "bytes": variants[form].stat().st_size}  # fmt: skip
    cache.write_text(json.dumps(result, indent=1))
    return result


def part_a(ctx: RunContext, out: Path, runs: int) -> None:
    rows, acc, loads = [], [], []
    for path in sorted(Path(ctx.ws.root).glob("compressed/*/metrics.json")):
        m = json.loads(path.read_text())
        forms = qdq_forms(ctx, path.parent, runs, out)
        lat = forms["latency"]["models"]
        reduction = m["unpruned"]["flops"] / m["costs"]["flops"]
        for b in ("1", "64"):
            ms = [lat[k][b]["median_ms"] for k in ("base (float)", "compressed (float)", *FORMS)]
            rows.append([m["name"], b, f"{100 / reduction:.1f}%", f"{reduction:.2f}x", *(f"{v:.3f}" for v in ms),
                         *(f"{ms[0] / v:.2f}x ({ms[0] / v / reduction:.2f})" for v in ms[1:])])  # fmt: skip
        loads.append(forms["latency"]["load_average_1min"])
        f, i = forms["float"], forms["int8"]
        acc.append([m["name"], f"{f['simulation_test_accuracy']:.2f}", f"{f['test_accuracy']:.2f}",
                    f"{f['top1_agreement']:.2f}", f"{i['test_accuracy']:.2f}", f"{i['top1_agreement']:.2f}",
                    f"{f['bytes']} / {i['bytes']}"])  # fmt: skip
    print("ORT CPU median ms, 1 intra-op thread, all four models of a policy timed together; speed-up "
          f"over the float base (its ratio to the FLOPs reduction); 1-min load before/after: {loads}")  # fmt: skip
    print(format_table(["policy", "batch", "FLOPs", "FLOPs reduction", "float base", "float pruned",
                        "QDQ exact", "QDQ int8-res.", "pruned speed-up", "QDQ exact speed-up",
                        "QDQ int8-res. speed-up"], rows))  # fmt: skip
    print(format_table(["policy", "test % simulation", "test % ORT exact", "agreement % exact",
                        "test % ORT int8-res.", "agreement % int8-res.", "bytes exact / int8-res."], acc))  # fmt: skip


# --- (b) --------------------------------------------------------------------------------------
def policies(dirs: list[str]) -> dict[str, Policy]:
    """Distinct policies (channels and bits) by the first file name they appear under."""
    seen: dict[tuple, tuple[str, Policy]] = {}
    for folder in dirs:
        for path in sorted(Path(folder).glob("*.json")):
            doc = json.loads(path.read_text())
            if "policy" not in doc:
                continue
            policy = Policy.from_json(doc["policy"])
            key = (
                tuple(sorted(policy.channels.items())),
                tuple(sorted((k, tuple(v)) for k, v in policy.bits.items())),
            )
            seen.setdefault(key, (f"{'/'.join(Path(folder).parts[2:-1])}/{path.stem}", policy))
    return dict(seen.values())


def part_b(ctx: RunContext, dirs: list[str], out: Path, runs: int, batch: int = 1) -> None:
    table_path = ctx.ws.path("latency.json")
    table = load_table(table_path, ctx.space) if table_path.is_file() else None
    if table is None or table.runtime != "onnxruntime":
        print(
            f"=== seernet profile-latency --runtime onnxruntime (batch {batch}, 1 thread), {load()}",
            flush=True,
        )
        out_text = subprocess.run([sys.executable, "-m", "seernet.cli.main", "profile-latency", "--workdir", str(ctx.ws.root),
                                   "--runtime", "onnxruntime", "--threads", "1", "--batch-size", str(batch)],
                                  check=True, capture_output=True, text=True).stdout  # fmt: skip
        print(out_text)
        table = load_table(table_path, ctx.space)
    out.mkdir(parents=True, exist_ok=True)
    done_path = out / f"measured-b{table.batch_size}.json"
    done = json.loads(done_path.read_text()) if done_path.is_file() else {}
    rows, errors = [], {"8-bit": [], "mixed": []}
    for name, policy in policies(dirs).items():
        if name not in done:
            before = os.getloadavg()[0]
            ms = measured_latency_ms(ctx.model, ctx.space, policy, table, runs=runs)
            done[name] = {
                "measured_ms": ms,
                "load_before": round(before, 2),
                "load_after": round(os.getloadavg()[0], 2),
            }
            done_path.write_text(json.dumps(done, indent=1))
        pred = predicted_latency_ms(ctx.space, table, policy)
        meas = done[name]["measured_ms"]
        kind = "8-bit" if all(tuple(b) == (8, 8) for b in policy.bits.values()) else "mixed"
        errors[kind].append(100 * (pred - meas) / meas)
        rows.append([name, kind, f"{pred:.3f}", f"{meas:.3f}", f"{errors[kind][-1]:+.1f}%",
                     f"{done[name]['load_before']} / {done[name]['load_after']}"])  # fmt: skip
    print(f"latency table: {table.device}, onnxruntime {table.runtime_version}, {table.threads} thread(s), "
          f"batch {table.batch_size}; prediction = {table.scale:.3f} x layers {table.overhead_ms:+.3f} ms")  # fmt: skip
    print(
        format_table(
            [
                "policy (QDQ model in ORT)",
                "bits",
                "predicted ms",
                "measured ms",
                "error",
                "load before / after",
            ],
            rows,
        )
    )
    every = errors["8-bit"] + errors["mixed"]
    for kind, errs in (("all", every), *errors.items()):
        if errs:
            abs_err = [abs(e) for e in errs]
            print(f"{kind}: {len(errs)} models, median |error| {statistics.median(abs_err):.1f}%, max {max(abs_err):.1f}%, "
                  f"mean signed {np.mean(errs):+.1f}%")  # fmt: skip


# --- (c) --------------------------------------------------------------------------------------
def qdq_conv(weight_type: int) -> bytes:
    """Q -> DQ -> Conv(DQ(weight)) -> Q -> DQ, 16 -> 16 channels 3x3, weights of ``weight_type``."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).integers(-7, 8, (16, 16, 3, 3))
    const = numpy_helper.from_array
    inits = [const(np.array(0.02, np.float32), "xs"), const(np.array(0, np.uint8), "xz"),
             helper.make_tensor("w", weight_type, w.shape, w.flatten().tolist()),
             const(np.full(16, 0.01, np.float32), "ws"), helper.make_tensor("wz", weight_type, [16], [0] * 16),
             const(np.array(0.05, np.float32), "ys"), const(np.array(0, np.uint8), "yz")]  # fmt: skip
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["out"])]  # fmt: skip
    io = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 16, 28, 28]) for n in ("x", "out")
    ]
    graph = helper.make_graph(nodes, "conv", io[:1], io[1:], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def part_c(out: Path) -> None:
    from collections import Counter

    import onnx
    import onnxruntime as ort

    out.mkdir(parents=True, exist_ok=True)
    for name, dtype in (("int8", onnx.TensorProto.INT8), ("int4", onnx.TensorProto.INT4)):
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(out / f"conv-{name}.optimized.onnx")
        opts.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        )  # portable ops only
        ort.InferenceSession(qdq_conv(dtype), opts, providers=["CPUExecutionProvider"])
        ops = Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)
        print(f"{name} weights, onnxruntime {ort.__version__}: {dict(ops)}")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    ws = Workspace(args.ws)
    if "a" in args.parts:
        print(f"(a) ORT latency of the compressed models ({load()} now)")
        part_a(RunContext(ws, ws.read(), torch.device("cpu")), Path(args.out), args.runs)
    if "b" in args.parts:
        print(f"\n(b) ORT latency model, batch {args.lap_batch} ({load()} now)")
        lap = Workspace(args.lap_ws or args.ws)
        ctx = RunContext(lap, lap.read(), torch.device("cpu"))
        part_b(ctx, args.policy_dirs, Path(args.out), args.runs, args.lap_batch)
    if "c" in args.parts:
        print("\n(c) int4 weight storage in ORT")
        part_c(Path(args.out))


if __name__ == "__main__":
    main()
