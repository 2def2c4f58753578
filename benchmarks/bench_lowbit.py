"""Uniform low-bit table: val accuracy of the unpruned model at W8A8 .. W2A2 after 0/20/250 QAT steps.

The unpruned default model (ResNet-20 on Fashion-MNIST) is built as ``compress`` builds
it (``seernet.compression.protocol.build_compressed``: adaptive BN, fake quantization, calibration,
adaptive BN), then fine-tuned as ``compress`` fine-tunes (``seernet.steps.compress.finetune``
with ``CompressSettings(steps=S)``: cosine schedule over S steps, seed 0, and whatever
quantizer settings that code has as defaults). Every free layer gets the row's bits; the
first conv and the classifier keep the space's fixed bits (8), as in every policy.

Only APIs that exist in the code before and after the quantizer work are used, so the
same script measures both: run it once as is, once with ``PYTHONPATH`` pointing at a
worktree of the start commit (it prints which seernet it imported). Each finished
(config, steps, code version) result is a JSON file under ``--out``/<version>/, skipped
on rerun; the code version is the imported tree's commit (plus a hash of uncommitted
changes under seernet/) and a hash of the fine-tuning settings.

    git worktree add /tmp/seernet-before <start-commit>
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/seernet-before .venv/bin/python benchmarks/bench_lowbit.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_lowbit.py --before <start-commit>
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import inspect
import json
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import torch

import seernet
from seernet.compression.protocol import build_compressed
from seernet.data.train import accuracy
from seernet.space.policy import Policy, SpaceChoices
from seernet.steps.compress import CompressSettings, finetune
from seernet.steps.context import RunContext, record_space
from seernet.tables import format_table
from seernet.workspace.folder import Workspace

# Rows: (weight bits, activation bits, kept fraction of every channel group). The default
# table is the unpruned uniform rows; the pruned (P50) ones serve the distillation comparison.
CONFIGS = {"W8A8": (8, 8, 1.0), "W6A6": (6, 6, 1.0), "W4A4": (4, 4, 1.0), "W3A3": (3, 3, 1.0),
           "W2A2": (2, 2, 1.0), "W2A8": (2, 8, 1.0), "W2A4": (2, 4, 1.0),
           "P50-W4A4": (4, 4, 0.5), "P50-W3A3": (3, 3, 0.5)}  # fmt: skip
DEFAULT_CONFIGS = ("W8A8", "W6A6", "W4A4", "W3A3", "W2A2", "W2A8", "W2A4")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="benchmarks/out/lowbit-ws")
    p.add_argument("--out", default="benchmarks/out/lowbit")
    p.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help=f"rows to measure, of {', '.join(CONFIGS)}",
    )
    p.add_argument(
        "--set",
        default="",
        help="fine-tuning settings other than the defaults, e.g. lsq=false,distill=0.5",
    )
    p.add_argument("--steps", default="0,20,250", help="QAT steps per column")
    p.add_argument(
        "--before", help="commit (prefix) of the 'before' code: print before | after per cell"
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="print the table from stored results, measure nothing",
    )
    p.add_argument(
        "--after", help="stored code version to report as 'after' (default: the imported code's)"
    )
    return p.parse_args()


MEASURED = ("seernet/compression/quant.py", "seernet/compression/protocol.py",
            "seernet/steps/compress.py", "seernet/data/train.py",
            "seernet/compression/prune.py", "seernet/data/loaders.py")  # fmt: skip


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout


def code_version(settings: CompressSettings) -> str:
    """Last commit of the measured code in the imported tree (+ hash of its uncommitted changes), settings hash.

    Only the files on the measured path count: other work committed meanwhile does not
    invalidate stored results.
    """
    root = Path(seernet.__file__).resolve().parent.parent
    commit = _git(root, "log", "-1", "--format=%h", "--abbrev=7", "--", *MEASURED).strip()
    diff = _git(root, "diff", "HEAD", "--", *MEASURED)
    if diff:
        commit += "+" + hashlib.sha1(diff.encode()).hexdigest()[:6]
    tuned = {
        k: v for k, v in asdict(settings).items() if k not in ("steps", "epochs", "latency_runs")
    }
    return f"{commit}-{hashlib.sha1(json.dumps(tuned, sort_keys=True).encode()).hexdigest()[:6]}"


def open_context(workdir: str) -> RunContext:
    ws = Workspace(workdir)
    ctx = RunContext(ws, ws.open({}), torch.device("cpu"))
    if not ctx.config.space:
        record_space(ctx, SpaceChoices())
    return ctx


def uniform_policy(ctx: RunContext, w_bits: int, a_bits: int, keep: float) -> Policy:
    """Groups at their valid count nearest ``keep``; free layers at (w_bits, a_bits), fixed ones at the fixed bits."""
    space, fixed = ctx.space, ctx.space.choices.fixed_bits
    bits = {
        ly.name: (fixed, fixed) if ly.fixed_bits else (w_bits, a_bits) for ly in space.quant_layers
    }
    channels = {
        g.name: min(g.keep, key=lambda n, g=g: abs(n - keep * g.channels)) for g in space.groups
    }
    return Policy(channels, bits)


def parse_settings(text: str) -> dict:
    """``key=value,...`` -> CompressSettings overrides (true/false, ints, floats)."""
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = (v.strip() for v in item.partition("="))
        flag = {"true": True, "false": False}.get(value.lower())
        out[key] = (
            flag
            if flag is not None
            else (float(value) if any(c in value for c in ".e") else int(value))
        )
    return out


def measure(ctx: RunContext, built: torch.nn.Module, steps: int, overrides: dict) -> dict:
    """Val accuracy of a copy of ``built`` after ``steps`` compress-like QAT steps."""
    start = time.perf_counter()
    model = copy.deepcopy(built)
    settings = CompressSettings(steps=steps, **overrides)
    history = []
    if steps > 0:
        kwargs = (
            {"teacher": ctx.model} if "teacher" in inspect.signature(finetune).parameters else {}
        )
        history = finetune(model, ctx.splits, settings, ctx.device, **kwargs)
    # finetune measures val after its last step: the same number, without a second pass
    acc = history[-1]["val_accuracy"] if history else accuracy(model, ctx.splits.val, ctx.device)
    return {
        "val": acc,
        "seconds": round(time.perf_counter() - start, 1),
        "settings": asdict(settings),
    }


def load_results(out: Path) -> dict[tuple[str, str, int], dict]:
    results = {}
    for f in out.glob("*/*.json"):
        r = json.loads(f.read_text())
        results[(r["version"], r["config"], r["steps"])] = r
    return results


def report(out: Path, configs: list[str], steps: list[int], before: str | None, after: str) -> str:
    results = load_results(out)
    versions = sorted({v for v, _, _ in results})
    # A stored version the given string starts, or a full commit hash that starts a stored version's commit.
    named = [v for v in versions if before and v.startswith(before)]
    named = named or [
        v for v in versions if before and before.startswith(v.split("-")[0].split("+")[0])
    ]
    old = named[0] if named else None

    def cell(version: str | None, config: str, s: int) -> str:
        r = results.get((version, config, s))
        return "-" if r is None else f"{r['val']:.2f}"

    rows = []
    for c in configs:
        rows.append(
            [
                c,
                *(
                    f"{cell(old, c, s)} | {cell(after, c, s)}" if old else cell(after, c, s)
                    for s in steps
                ),
            ]
        )
    head = f"val accuracy %, ResNet-20 (P50: half the channels); before = {old or '(not given)'}, after = {after}"
    cols = [f"{s} steps" + (" (before | after)" if old else "") for s in steps]
    return head + "\n" + format_table(["config", *cols], rows)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    print(f"seernet imported from {Path(seernet.__file__).resolve().parent}", flush=True)
    configs, steps = args.configs.split(","), [int(s) for s in args.steps.split(",")]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown config {unknown[0]!r}; known: {', '.join(CONFIGS)}")
    overrides = parse_settings(args.set)
    version = code_version(CompressSettings(**overrides))
    out = Path(args.out)
    ctx = open_context(args.workdir)
    for config in [] if args.report_only else configs:
        todo = [s for s in steps if not (out / version / f"{config}-s{s}.json").is_file()]
        if not todo:
            continue
        policy = uniform_policy(ctx, *CONFIGS[config])
        torch.manual_seed(0)
        built = build_compressed(
            ctx.model, ctx.space, policy, ctx.splits, CompressSettings().protocol(), ctx.device
        )
        for s in todo:
            r = {
                "version": version,
                "config": config,
                "steps": s,
                **measure(ctx, built, s, overrides),
            }
            path = out / version / f"{config}-s{s}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(r, indent=1))
            print(
                f"{version} {config} {s:>4} steps: val {r['val']:.2f}% ({r['seconds']:.0f} s)",
                flush=True,
            )
    print(report(out, configs, steps, args.before, args.after or version))


if __name__ == "__main__":
    main()
