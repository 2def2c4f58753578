"""Sony's Model Compression Toolkit (MCT): mixed-precision PTQ at weight-memory targets.

Runs in the peers' environment (``bash benchmarks/peers/setup.sh``), on the base model and
data of a seernet workspace, so the bench compares MCT on exactly what seernet sees:

    benchmarks/peers/.venv/bin/python benchmarks/peers/mct_ptq.py --workdir WS \
        --weights-memory 135304,101478,67652 --out mct.json

For every target (bytes of quantized kernels, MCT's ``ResourceUtilization.weights_memory``)
MCT's default PyTorch target platform (kernels 8/4/2-bit per channel, activations 8-bit)
searches a per-layer weight bit allocation (its own sensitivity metric and ILP), then
post-training quantizes. Written per target: the test and val accuracy of MCT's own
quantized model as it ships (no fine-tuning), and each conv/linear layer's weight bits by
seernet layer name, so the bench can put the same allocation through seernet's fine-tuning.
MCT folds BatchNorm into the preceding conv, so its layers are named after the conv.
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import islice
from pathlib import Path

import model_compression_toolkit as mct
import torch
from mct_quantizers import PytorchQuantizationWrapper

from seernet.data.loaders import batches
from seernet.data.train import accuracy
from seernet.models.base_model import build_model, load_splits
from seernet.workspace.folder import Workspace


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--workdir",
        required=True,
        help="seernet workspace (its seernet.json names model, weights, data)",
    )
    p.add_argument("--weights-memory", required=True, help="comma-separated targets in bytes")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument(
        "--calib-batches", type=int, default=8, help="representative batches of 32 training images"
    )
    p.add_argument(
        "--mp-images", type=int, default=32, help="images MCT's mixed-precision search scores on"
    )
    return p.parse_args()


def layer_bits(quantized: torch.nn.Module, names: list[str]) -> dict[str, int]:
    """Weight bits per seernet layer name, read from MCT's quantization wrappers."""
    by_mct = {}
    for n, m in quantized.named_modules():
        if isinstance(m, PytorchQuantizationWrapper) and "weight" in m.weights_quantizers:
            by_mct[n.removesuffix("_bn")] = int(m.weights_quantizers["weight"].num_bits)
    missing = [n for n in names if n.replace(".", "_") not in by_mct]
    if missing:
        raise RuntimeError(
            f"MCT's model has no quantized layer for {missing[:3]} (it has {sorted(by_mct)[:5]}...)"
        )
    return {n: by_mct[n.replace(".", "_")] for n in names}


def main() -> None:
    args = parse_args()
    config = Workspace(args.workdir).read()
    splits = load_splits(config)
    model = build_model(config, splits).eval()
    names = [
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]

    def representative():
        for x, _ in islice(batches(splits.train, 32, shuffle=True, seed=0), args.calib_batches):
            yield [x.numpy()]

    full = mct.core.pytorch_resource_utilization_data(model, representative)
    results = []
    for target in (float(t) for t in args.weights_memory.split(",")):
        started = time.perf_counter()
        core = mct.core.CoreConfig(
            mixed_precision_config=mct.core.MixedPrecisionQuantizationConfig(
                num_of_images=args.mp_images
            )
        )
        quantized, _ = mct.ptq.pytorch_post_training_quantization(
            model, representative, target_resource_utilization=mct.core.ResourceUtilization(weights_memory=target),
            core_config=core,
        )  # fmt: skip
        quantized = quantized.cpu().eval()
        bits = layer_bits(quantized, names)
        n_weights = {n: model.get_submodule(n).weight.numel() for n in names}
        results.append({
            "weights_memory_target": target,
            "weights_memory": sum(n_weights[n] * b / 8 for n, b in bits.items()),
            "bits": bits,
            "test": accuracy(quantized, splits.test, torch.device("cpu")),
            "val": accuracy(quantized, splits.val, torch.device("cpu")),
            "seconds": round(time.perf_counter() - started, 1),
        })  # fmt: skip
        print(
            f"MCT at {target:.0f} B: test {results[-1]['test']:.2f}%, bits {sorted(set(bits.values()))}",
            flush=True,
        )
    doc = {"mct_version": mct.__version__, "torch_version": torch.__version__,
           "weights_memory_8bit": float(full.weights_memory), "results": results}  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
