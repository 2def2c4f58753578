"""Hardware-friendly channel counts: ORT speed-up against the FLOPs reduction per channel multiple.

For the default model (ResNet-20, Fashion-MNIST weights ``data/resnet20_fmnist.pt``, 28x28) and
each channel multiple N (``SpaceChoices(channel_multiple=N)``, as ``seernet collect
--channel-multiple N`` fixes it) and FLOPs budget (30/50/70% of the unpruned model), this bench

1. builds Torch-Pruning's global-ranking policy at 8 bits (``global_ranking_policy``: the smallest
   global ratio whose counts, rounded up to the space's multiples of N, meet the budget);
2. exports the pruned float model (``float_onnx``) and its QDQ int8 form (``export_qdq``, int8
   residual branches as ``seernet compress`` writes by default; calibrated on random inputs,
   which do not change ORT's kernels or their time);
3. times the float base and every cell's pruned float and QDQ model in one ONNX Runtime table
   (``ort_latency_table``: 1 intra-op thread, batch 1 and 64, median of ``--runs``, the 1-minute
   load before and after), the models taking turns one run each, so every model sees the same
   stretch of the machine (timed cell by cell, the same float base measured 0.45-0.78 ms across
   one run's cells on this 2-core VM); and prints each speed-up over the float base next to the
   FLOPs reduction (base FLOPs / policy FLOPs) and their ratio (1.0: the speed-up the FLOPs
   promise).

A cell "full" times the unpruned model's QDQ form (quantization alone). A budget a multiple
cannot reach (16 leaves ResNet-20's 16-channel groups unpruned: >= 46% of the FLOPs) is listed
as unattainable. Every built cell and then the timing table are stored in ``OUT/results.json``
and skipped on a rerun (with other settings, use another ``--out``). Timings mean something
only on a quiet machine.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_channel_multiple.py --out benchmarks/out/channel-multiple
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from seernet.compression.export import deployable
from seernet.compression.global_ranking import global_ranking_policy
from seernet.compression.onnx_qdq import export_qdq
from seernet.compression.ort_runtime import float_onnx, ort_latency_table
from seernet.latency.ort import quantized_model
from seernet.models import create_model
from seernet.space.costs import CostModel
from seernet.space.graph import build_space
from seernet.space.policy import Policy, PolicySpace, SpaceChoices
from seernet.tables import format_table
from seernet.workspace.artifacts import write_json
from seernet.workspace.checkpoint import load_weights

INPUT_SHAPE = (1, 1, 28, 28)
BITS = 8


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default="data/resnet20_fmnist.pt", help="resnet20 checkpoint")
    p.add_argument("--out", default="benchmarks/out/channel-multiple", help="results and models")
    p.add_argument("--multiples", default="1,4,8,16", help="channel multiples N")
    p.add_argument("--flops", default="30,50,70", help="FLOPs budgets, %% of the unpruned model")
    p.add_argument("--batches", default="1,64", help="batch sizes timed")
    p.add_argument("--runs", type=int, default=50, help="timed runs per model and batch size")
    p.add_argument("--prune-step", type=float, default=SpaceChoices().prune_step,
                   help="the space's pruning ratio step (default: seernet's)")  # fmt: skip
    return p.parse_args()


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def settings_of(args: argparse.Namespace) -> dict:
    """What every stored cell was measured with: a rerun with other settings needs another --out."""
    return {"weights": str(args.weights), "batches": ints(args.batches), "runs": args.runs,
            "prune_step": args.prune_step, "bits": BITS, "threads": 1}  # fmt: skip


def load_results(path: Path, settings: dict) -> dict:
    if not path.is_file():
        return {"settings": settings, "cells": {}}
    results = json.loads(path.read_text())
    if results.get("settings") != settings:
        raise SystemExit(f"{path} was measured with {results.get('settings')}: use another --out")
    return results


def base_model(weights: str) -> torch.nn.Module:
    model = create_model("resnet20", 10, INPUT_SHAPE[1])
    load_weights(model, weights, "resnet20")
    return model.eval()


FORMS = ("pruned (float)", "QDQ int8")


def export_files(folder: Path, key: str) -> dict[str, Path]:
    """Where one cell's two exports live: ``{form: file}``."""
    return {FORMS[0]: folder / f"{key}.float.onnx", FORMS[1]: folder / f"{key}.qdq.onnx"}


def exports(
    model: torch.nn.Module, space: PolicySpace, policy: Policy, folder: Path, key: str
) -> None:
    """The pruned float model and its QDQ int8 form, from one pruned model, as files."""
    qmodel = quantized_model(model, space, policy)
    files = export_files(folder, key)
    folder.mkdir(parents=True, exist_ok=True)
    calibration = torch.randn((8, *INPUT_SHAPE[1:]), generator=torch.Generator().manual_seed(0))
    export_qdq(qmodel, torch.zeros((2, *INPUT_SHAPE[1:])), files[FORMS[1]], "int8", calibration)
    files[FORMS[0]].write_bytes(float_onnx(deployable(qmodel, quantized=False), INPUT_SHAPE))


def build_cell(model, space: PolicySpace, costs: CostModel, pct: int | None, folder: Path,
               key: str) -> dict:  # fmt: skip
    """One (N, budget) cell: the global-ranking policy, its FLOPs and its exports."""
    full = costs.unpruned()["flops"]
    if pct is None:
        policy, ratio = space.full_policy(BITS), 0.0
    else:
        try:
            policy, ratio = global_ranking_policy(
                model, space, costs, {"flops": pct / 100 * full}, BITS
            )
        except ValueError as exc:
            return {"unattainable": str(exc)}
    exports(model, space, policy, folder, key)
    return {"ratio": ratio, "flops": costs.of_policy(policy)["flops"], "unpruned_flops": full,
            "channels": policy.channels}  # fmt: skip


def time_all(model, results: dict, args, folder: Path) -> dict:
    """One interleaved ORT table: the float base and both forms of every attainable cell."""
    base = folder / "base.float.onnx"
    base.write_bytes(float_onnx(model, INPUT_SHAPE))
    variants: dict[str, Path] = {"base (float)": base}
    for key, cell in results["cells"].items():
        if "unattainable" not in cell:
            variants.update({f"{key} {form}": f for form, f in export_files(folder, key).items()})
    started = time.perf_counter()
    print(f"timing {len(variants)} models in turn ...", flush=True)
    table = ort_latency_table(variants, INPUT_SHAPE, ints(args.batches), args.runs, threads=1)
    return {**table, "seconds": time.perf_counter() - started}


def cells(args) -> list[tuple[int, int | None]]:
    return [(1, None)] + [(n, p) for n in ints(args.multiples) for p in ints(args.flops)]


def rows(results: dict, args) -> list[list[str]]:
    out = []
    models = results["latency"]["models"]
    for n, pct in cells(args):
        key = cell_key(n, pct)
        cell = results["cells"].get(key)
        if cell is None:
            continue
        if "unattainable" in cell:
            out.append([key, "-", "unattainable", *["-"] * 6])
            continue
        reduction = cell["unpruned_flops"] / cell["flops"]
        counts = sorted(set(cell["channels"].values()))
        for b in map(str, ints(args.batches)):
            base = models["base (float)"][b]["median_ms"]
            pruned, qdq = (models[f"{key} {form}"][b]["median_ms"] for form in FORMS)
            out.append([key, b, f"{reduction:.2f}x", f"{base:.3f}", f"{pruned:.3f}", f"{qdq:.3f}",
                        f"{base / pruned:.2f}x ({base / pruned / reduction:.2f})",
                        f"{base / qdq:.2f}x ({base / qdq / reduction:.2f})",
                        " ".join(map(str, counts))])  # fmt: skip
    return out


def cell_key(n: int, pct: int | None) -> str:
    return "full" if pct is None else f"N{n}_flops{pct}"


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    path = out / "results.json"
    results = load_results(path, settings_of(args))
    model = base_model(args.weights)
    spaces: dict[int, tuple[PolicySpace, CostModel]] = {}
    for n, pct in cells(args):
        key = cell_key(n, pct)
        if key in results["cells"]:
            continue
        if n not in spaces:
            space = build_space(
                model, INPUT_SHAPE, SpaceChoices(prune_step=args.prune_step, channel_multiple=n)
            )
            spaces[n] = (space, CostModel(space))
        print(f"measuring {key} ...", flush=True)
        results["cells"][key] = build_cell(model, *spaces[n], pct, out / "models", key)
        results.pop("latency", None)  # a new cell: the models are timed together again
        write_json(path, results)  # after every cell: a rerun resumes here
    if "latency" not in results:
        results["latency"] = time_all(model, results, args, out / "models")
        write_json(path, results)
    load = results["latency"]["load_average_1min"]
    print(
        "ORT CPU median ms, 1 intra-op thread, every model timed in turn, global-ranking policies at"
    )
    print("8 bits; speed-up over the float base (its ratio to the FLOPs reduction); 1-min load "
          f"{load['before']} before, {load['after']} after")  # fmt: skip
    print(format_table(["cell", "batch", "FLOPs reduction", "float base", "pruned float", "QDQ int8",
                        "pruned speed-up", "QDQ speed-up", "kept counts"], rows(results, args)))  # fmt: skip


if __name__ == "__main__":
    main()
