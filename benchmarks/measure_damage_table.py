"""Measure a workspace's damage table with other settings, for the table study in docs/results.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/measure_damage_table.py WS BATCHES OUT.json [SEED [DAMAGE [FINETUNE]]]

``BATCHES`` loss batches (``seernet.compression.sensitivity.LOSS_BATCHES``), the store's
protocol with its seed replaced by ``SEED`` if given, ``DAMAGE`` ("kl" or "loss",
``sensitivity.DAMAGE``) if given, ``FINETUNE`` fine-tuning steps of every pruning variant
(``sensitivity.PRUNE_FINETUNE_STEPS``) if given; the table is written to OUT.json (the
workspace is not touched). ``benchmarks/eval_damage_table.sh`` scores a table on the
fast-solve bench.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import torch

import seernet.compression.sensitivity as sensitivity
from seernet.compression.protocol import Protocol
from seernet.steps.context import RunContext
from seernet.workspace.folder import Workspace
from seernet.workspace.store import SampleStore


def main(argv: list[str]) -> None:
    ws, batches, out = argv[0], int(argv[1]), argv[2]
    sensitivity.LOSS_BATCHES = batches
    ctx = RunContext(Workspace(ws), Workspace(ws).read(), torch.device("cpu"))
    with SampleStore.open(f"{ws}/samples.h5") as store:
        protocol = Protocol(**store.spec.protocol)
    if len(argv) > 3:
        protocol = replace(protocol, seed=int(argv[3]))
    if len(argv) > 4:
        sensitivity.DAMAGE = argv[4]
    if len(argv) > 5:
        sensitivity.PRUNE_FINETUNE_STEPS = int(argv[5])
    table = sensitivity.measure_damage(ctx.model, ctx.space, ctx.splits, protocol, ctx.device,
                                       ctx.criterion(protocol.criterion), progress=False)  # fmt: skip
    with open(out, "w") as f:
        json.dump(table.to_json(), f)
    print(f"{table.seconds:.0f} s, {table.images} images -> {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
