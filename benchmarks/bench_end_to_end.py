"""End to end: seernet against the baselines a reviewer would ask for, 3 fine-tuning seeds each.

Cells (budgets) and the methods compared in each:

- ``P%-8bit`` (P = 30, 50, 70% of the base FLOPs), every layer 8-bit, only pruning differs:
  ``seernet`` (solve at --bits 8), ``uniform`` (largest common keep fraction on the levels),
  ``tp-global`` (Torch-Pruning's MetaPruner, global_pruning=True, group-norm importance,
  ratio bisected; ``seernet/compression/global_ranking.py``).
- ``P%-mixed-Kx``: FLOPs P% and BitOPs = K x that FLOPs budget, K = 16, 9, 4 (uniform 4-,
  3-, 2-bit equivalents). ``seernet`` solves both budgets (pruning and bits). The two
  bit-allocation baselines take the channel counts of the *best pruning baseline* at P%
  8-bit (uniform or tp-global, by mean test accuracy once measured; tp-global until then),
  so they differ only in bits: ``uniform-bits`` puts every free layer at the equivalent
  b-bit, ``hawq`` allocates by HAWQ-V3 (Hessian-trace sensitivity, ILP; ``seernet/compression/hawq.py``;
  a = w per layer). First conv and classifier stay 8-bit in every policy, so uniform-bits
  exceeds K x FLOPs by 3-10% (shown as "over"); ``hawq`` and ``seernet`` get exactly the
  BitOPs of ``uniform-bits`` (and the cell's FLOPs), so all three spend the same.
- ``size-Bbit`` (B = 4, 3, 2): weight memory of the unpruned model at uniform B-bit (first
  and last layer 8-bit). ``seernet`` (solve --size, bits mixed), ``uniform-bits`` (weights
  B-bit) and ``hawq``, both with 8-bit activations (they cost no weight memory), ``mct-ptq``
  (Sony MCT's mixed-precision PTQ at the same kernel bytes, as it ships, no fine-tuning) and
  ``mct-ft`` (MCT's bit allocation, activations 8-bit, put through seernet's fine-tuning;
  its first/last layers forced to 8 bits like every policy here, a little over the level).

``seernet`` is what ``seernet solve`` returns on ``--workdir``'s predictor and store (the fast
solve: windows around the best stored and ranking policies), or with ``--refine N`` the answer
of ``solve --refine N`` there (store, global-ranking and HAWQ anchors, trust region: it may
return a baseline's own policy, and then shares that policy's runs).

Two processes must not refine at once (the store takes one writer; the second skips its
seernet arm, and a rerun fills it in) nor fine-tune the same run (the second fails on the
shared output folder; the first's record stands).

Every policy gets identical fine-tuning: ``seernet.steps.compress`` with ``CompressSettings()``
defaults and ``seed`` = each of ``--seeds``, scored on the test set. Tables show mean +- std
over seeds; a "win" is only a gap larger than the larger std. Latency is not re-measured
here: each run's record keeps what ``compress`` measured (``latency``).

Resumable: each finished run is a JSON file under ``OUT/runs/`` named by a hash of the
fine-tuning settings, the policy and the run's identity, so a rerun skips what is done and
a changed recipe is rerun. HAWQ sensitivities and MCT's results are cached the same way.
Each arm's policy document is ``OUT/ws/policies/<cell>-<method>.json`` and its seed-0 model
``OUT/ws/compressed/<cell>-<method>/`` (what ``bench_seeds.py`` reads).

Run it as a module from the repo root (it imports ``benchmarks.anchors``):

    OMP_NUM_THREADS=1 nohup .venv/bin/python -m benchmarks.bench_end_to_end \
        --workdir benchmarks/out/ws-default > benchmarks/out/e2e.log 2>&1 &
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.anchors.runs import RunStore, digest, mean_std, run_key, verdict
from seernet.compression.global_ranking import global_ranking_policy
from seernet.compression.hawq import (
    HESSIAN_BATCHES,
    PROBES,
    Sensitivity,
    hawq_policy,
    pruned_sensitivity,
)
from seernet.device import resolve_device
from seernet.errors import UserError
from seernet.space.policy import Policy, SpaceChoices
from seernet.steps.compress import CompressSettings, compress
from seernet.steps.context import RunContext, record_space
from seernet.steps.fit import load_samples
from seernet.steps.solve import BudgetSet, bits_mask, load_predictor, solve_fast
from seernet.tables import format_table
from seernet.workspace.artifacts import write_json
from seernet.workspace.folder import Workspace

FRACTIONS = (0.3, 0.5, 0.7)
BITOPS_FACTORS = {16: 4, 9: 3, 4: 2}  # K x FLOPs budget -> the uniform bit-width it equals
SIZE_BITS = (4, 3, 2)
MODES = ("8bit", "mixed", "size")
METHODS = ("seernet", "uniform", "tp-global", "uniform-bits", "hawq", "mct")
BASELINES = {"8bit": ("uniform", "tp-global"), "mixed": ("uniform-bits", "hawq"),
             "size": ("uniform-bits", "hawq", "mct-ptq", "mct-ft")}  # fmt: skip
PLOT_COLORS = {
    m: f"C{i}"
    for i, m in enumerate(
        ("seernet", "uniform", "tp-global", "uniform-bits", "hawq", "mct-ptq", "mct-ft")
    )
}
PEERS_PYTHON = Path(__file__).resolve().parent / "peers" / ".venv" / "bin" / "python"


@dataclass(frozen=True)
class Cell:
    """One budget: a FLOPs fraction at 8 bits, FLOPs + BitOPs, or a weight size."""

    mode: str
    frac: float | None = None
    factor: int | None = None
    bits: int | None = None

    @property
    def name(self) -> str:
        if self.mode == "size":
            return f"size-{self.bits}bit"
        tail = f"-{self.factor}x" if self.mode == "mixed" else ""
        return f"{round(100 * self.frac)}%-{self.mode}{tail}"


@dataclass
class Arm:
    """One method's policy in one cell (``policy`` None: a result measured outside seernet)."""

    cell: Cell
    method: str
    policy: Policy | None
    budgets: dict[str, float]
    info: dict = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="benchmarks/out/ws-default",
                   help="seernet workspace with samples.h5 and predictor.pt (the seernet arm; skipped if absent)")  # fmt: skip
    p.add_argument(
        "--out", default="benchmarks/out/e2e", help="runs, caches and results (resumable)"
    )
    p.add_argument(
        "--docs", default="docs", help="where the summary table (.md) and plot (.png) go"
    )
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)}",
    )
    p.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}"
    )
    p.add_argument("--fractions", default=",".join(map(str, FRACTIONS)), help="FLOPs fractions")
    p.add_argument(
        "--factors",
        default=",".join(map(str, BITOPS_FACTORS)),
        help="BitOPs / FLOPs factors (16,9,4)",
    )
    p.add_argument(
        "--size-bits",
        default=",".join(map(str, SIZE_BITS)),
        help="size levels as uniform bit-widths",
    )
    p.add_argument("--seeds", default="0,1,2", help="fine-tuning seeds")
    p.add_argument(
        "--steps", type=int, help="QAT steps per model (default: compress's own; for smoke runs)"
    )
    p.add_argument(
        "--probes", type=int, default=PROBES, help="HAWQ: Hessian-vector products per batch"
    )
    p.add_argument(
        "--hessian-batches",
        type=int,
        default=HESSIAN_BATCHES,
        help="HAWQ: training batches of 128 for the traces",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="where fine-tuning runs: cpu (default), auto, cuda, cuda:N "
        "(results are keyed by settings, not device; HAWQ traces and MCT always run on the CPU)",
    )
    p.add_argument(
        "--distill",
        type=float,
        help="distillation weight of the fine-tuning (default: compress's own)",
    )
    p.add_argument(
        "--refine",
        type=int,
        help="seernet arm: the best measured policy of 'solve --refine N' on "
        "--workdir (which it extends; cached per cell) instead of the plain solve",
    )
    p.add_argument(
        "--plan-only", action="store_true", help="print every policy's costs, fine-tune nothing"
    )
    args = p.parse_args(argv)
    args.methods, args.modes = set(args.methods.split(",")), set(args.modes.split(","))
    for given, known, what in ((args.methods, METHODS, "method"), (args.modes, MODES, "mode")):
        if given - set(known):
            p.error(f"unknown {what} {sorted(given - set(known))}; known: {', '.join(known)}")
    args.fractions = [float(f) for f in args.fractions.split(",")]
    args.factors = [int(k) for k in args.factors.split(",")]
    args.size_bits = [int(b) for b in args.size_bits.split(",")]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if set(args.factors) - set(BITOPS_FACTORS):
        p.error(f"--factors must be among {list(BITOPS_FACTORS)}")
    return args


# --- workspace, identity, seernet's predictor --------------------------------------------
def bench_context(out: Path, workdir: Path, device: torch.device) -> RunContext:
    """The bench's own workspace (compress writes there): a copy of ``workdir``'s identity
    when that workspace exists, else the default model and data."""
    ws = Workspace(out / "ws")
    if not ws.exists():
        src = Workspace(workdir)
        if src.exists():
            ws.root.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src.config_path, ws.config_path)
        else:
            ctx = RunContext(ws, ws.open({}), device)
            record_space(ctx, SpaceChoices())
            return ctx
    return RunContext(ws, ws.read(), device)


def identity(ctx: RunContext) -> dict:
    """What a result depends on besides settings and policy: model, weights, data split, space."""
    c = ctx.config
    weights = hashlib.sha256(Path(c.weights).read_bytes()).hexdigest()[:16] if c.weights else None
    return {"model": c.model, "dataset": c.dataset, "val_size": c.val_size, "split_seed": c.split_seed,
            "weights": weights, "space": ctx.space.fingerprint}  # fmt: skip


def seernet_predictor(ctx: RunContext, workdir: Path):  # an MLPEnsemble or None
    """The predictor of ``workdir`` if it is there and made for this bench's space, else None (says why)."""
    src = Workspace(workdir)
    missing = [
        n for n in ("seernet.json", "samples.h5", "predictor.pt") if not src.path(n).is_file()
    ]
    if missing:
        print(f"seernet arm skipped: {workdir} lacks {', '.join(missing)} "
              f"(make it with 'seernet collect' and 'seernet fit-predictor --workdir {workdir}')")  # fmt: skip
        return None
    try:
        wctx = RunContext(src, src.read(), torch.device("cpu"))
        if identity(wctx) != identity(ctx):
            print(
                f"seernet arm skipped: {workdir} is about another model, data or space than {ctx.ws.root}"
            )
            return None
        return load_predictor(wctx)
    except UserError as exc:
        print(f"seernet arm skipped: {exc}")
        return None


# --- policies ----------------------------------------------------------------------------
def uniform_policy(ctx: RunContext, budget: float, bits: int) -> Policy:
    """The largest common keep fraction (on the levels) whose FLOPs fit ``budget``."""
    groups = ctx.space.groups
    for frac in sorted({k / g.channels for g in groups for k in g.keep}, reverse=True):
        policy = ctx.space.uniform_policy(frac, bits)
        if ctx.costs.of_policy(policy)["flops"] <= budget:
            return policy
    raise RuntimeError(f"no uniform policy fits {budget}")


def seernet_arm(
    ctx: RunContext,
    predictor,
    cell: Cell,
    budgets: dict[str, float],
    args: argparse.Namespace,
    solve_budgets: dict[str, float] | None = None,
) -> list[Arm]:
    """seernet's policy for ``solve_budgets`` (default ``budgets``, the cell's own; bits
    fixed at 8 in 8-bit cells, searched otherwise): solved on the predictor, or with
    ``--refine N`` the answer of ``solve --refine N``; none (said why) when the space cannot
    meet them."""
    sb = solve_budgets or budgets
    if args.refine:
        return refined_arm(ctx, cell, budgets, sb, args)
    fixed, values = bits_mask(ctx, 8 if cell.mode == "8bit" else None)
    try:  # what `seernet solve` runs: windows around the best stored and ranking policies
        src = Workspace(args.workdir)  # the predictor's store (OUT/ws holds no samples)
        stored = load_samples(RunContext(src, src.read(), ctx.device))[:2]
        res = solve_fast(ctx, predictor, BudgetSet(sb, cell.name, {}), fixed, values, stored)
    except UserError as exc:
        print(f"seernet arm of {cell.name} skipped: {exc}")
        return []
    info = {"predicted": {"mean": res.mean, "std": res.std}, "solve_seconds": res.seconds,
            "solve_budgets": sb}  # fmt: skip
    return [Arm(cell, "seernet", ctx.space.decode(res.x), budgets, info)]


def refined_arm(
    ctx: RunContext,
    cell: Cell,
    budgets: dict[str, float],
    solve_budgets: dict[str, float],
    args: argparse.Namespace,
) -> list[Arm]:
    """``solve --refine N`` on ``--workdir`` (which it extends), done once per cell: the
    returned policy is cached under OUT/refined/, so a rerun fine-tunes the same policy."""
    from seernet.steps.refine import refine_all

    # v2: anchored at the global ranking, trust region (refine.py); v1 files are the old loop's.
    # v3: HAWQ's allocation is an anchor too; it exists only under a BitOPs or size budget,
    # so an 8-bit cell's refine is unchanged and keeps its v2 answer.
    # The budgets are in the name: a mixed cell's BitOPs follow the best pruning baseline.
    version = "v2" if cell.mode == "8bit" else "v3"
    tag = digest({k: round(v) for k, v in solve_budgets.items()})[:8]
    path = Path(args.out) / "refined" / f"{cell.name}-n{args.refine}-{version}-{tag}.json"
    if not path.is_file():
        src = Workspace(args.workdir)
        wctx = RunContext(src, src.read(), torch.device("cpu"))
        fixed, values = bits_mask(wctx, 8 if cell.mode == "8bit" else None)
        bits_mode = "8-bit" if cell.mode == "8bit" else "mixed"
        try:
            (doc,) = refine_all(wctx, load_predictor(wctx), [BudgetSet(solve_budgets, cell.name, {})], fixed,
                                values, bits_mode, args.refine)  # fmt: skip
        except UserError as exc:
            print(f"seernet arm of {cell.name} skipped: {exc}")
            return []
        doc.write(path)
    doc = json.loads(path.read_text())
    m = doc["measured"]
    info = {
        "predicted": doc["predicted"],
        "refine": {
            "val_accuracy": m["val_accuracy"],
            "evaluations": m["evaluations"],
            "source": m.get("source"),
        },
        "solve_budgets": solve_budgets,
    }
    return [Arm(cell, "seernet", Policy.from_json(doc["policy"]), budgets, info)]


def kernel_bytes(ctx: RunContext, policy: Policy) -> float:
    """Bytes of the conv/linear weights at their bit-widths (MCT's ``weights_memory``)."""
    x = torch.as_tensor(ctx.space.encode(policy))[None]
    wb, _ = ctx.costs.layer_bits(x)
    return float((ctx.costs.layer_weights(x) * wb / 8.0).sum())


def hawq_sensitivity(
    ctx: RunContext, args: argparse.Namespace, channels: dict[str, int]
) -> Sensitivity:
    """HAWQ sensitivities of the model pruned to ``channels`` (BN re-estimated); cached on disk."""
    key = digest({"channels": channels, "identity": identity(ctx), "probes": args.probes,
                  "batches": args.hessian_batches, "bits": list(ctx.space.choices.bits)})  # fmt: skip
    path = Path(args.out) / "hawq" / f"{key}.json"
    if path.is_file():
        return Sensitivity(**json.loads(path.read_text()))
    print(f"HAWQ: Hessian traces, {args.hessian_batches} x {args.probes} HVPs ...", flush=True)
    sens = pruned_sensitivity(
        ctx.model, ctx.space, ctx.splits.train, channels, args.probes, args.hessian_batches
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sens.to_json(), indent=2))
    return sens


def mct_results(
    ctx: RunContext, args: argparse.Namespace, targets: list[float]
) -> list[dict] | None:
    """MCT's PTQ at each weight-memory target, run in the peers' environment; one cache file per target."""
    ident = identity(ctx)
    paths = {
        t: Path(args.out) / "mct" / f"{digest({'target': round(t, 1), 'identity': ident})}.json"
        for t in targets
    }
    missing = [t for t, p in paths.items() if not p.is_file()]
    if missing:
        if not PEERS_PYTHON.is_file():
            print(
                f"MCT arm skipped: no peers environment ({PEERS_PYTHON}); run 'bash benchmarks/peers/setup.sh'"
            )
            return None
        batch = paths[missing[0]].with_suffix(".batch.json")
        log = paths[missing[0]].with_suffix(".log")
        cmd = [str(PEERS_PYTHON), str(PEERS_PYTHON.parents[2] / "mct_ptq.py"), "--workdir", str(ctx.ws.root),
               "--weights-memory", ",".join(f"{t:.1f}" for t in missing), "--out", str(batch)]  # fmt: skip
        print(f"MCT: mixed-precision PTQ at {len(missing)} target(s) (log: {log}) ...", flush=True)
        batch.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
        if rc != 0:
            print(f"MCT arm skipped: mct_ptq.py failed (exit {rc}); see {log}")
            return None
        doc = json.loads(batch.read_text())
        for t, r in zip(missing, doc["results"], strict=True):
            paths[t].write_text(
                json.dumps(
                    {**r, "mct_version": doc["mct_version"], "torch_version": doc["torch_version"]},
                    indent=2,
                )
            )
        batch.unlink()
    return [json.loads(paths[t].read_text()) for t in targets]


def mct_policy(ctx: RunContext, bits: dict[str, int]) -> Policy:
    """Unpruned, ``bits`` as weight bits of the free layers, activations 8-bit (they cost no
    weight memory; MCT's default); first conv and classifier stay at fixed_bits."""
    full = ctx.space.full_policy(8)
    chosen = {ly.name: (bits[ly.name], 8) for ly in ctx.space.free_layers}
    return Policy(full.channels, {**full.bits, **chosen})


def best_pruning(
    ctx: RunContext, store: RunStore, args: argparse.Namespace, frac: float
) -> tuple[str, dict[str, int]]:
    """The pruning baseline with the higher mean test accuracy at ``frac`` 8-bit (tp-global until measured)."""
    budget = frac * ctx.costs.unpruned()["flops"]
    cands = {
        "uniform": uniform_policy(ctx, budget, 8),
        "tp-global": global_ranking_policy(ctx.model, ctx.space, ctx.costs, {"flops": budget})[0],
    }
    scores = {}
    for method, pol in cands.items():
        accs = [
            store.load(k)["test"]
            for k in (run_key(settings(args, s), pol, identity(ctx)) for s in args.seeds)
            if store.done(k)
        ]
        if len(accs) == len(args.seeds):
            scores[method] = float(np.mean(accs))
    best = max(scores, key=scores.get) if len(scores) == 2 else "tp-global"
    return best, cands[best].channels


def plan(
    ctx: RunContext, args: argparse.Namespace, store: RunStore, predictor, mode: str
) -> list[Arm]:
    """Every arm of one mode (the mixed mode reads the 8-bit results for its pruning)."""
    full = ctx.costs.unpruned()
    want = lambda m: m in args.methods  # noqa: E731
    arms: list[Arm] = []
    if mode == "8bit":
        for frac in args.fractions:
            cell, budget = Cell("8bit", frac), frac * full["flops"]
            b = {"flops": budget}
            if want("uniform"):
                arms.append(Arm(cell, "uniform", uniform_policy(ctx, budget, 8), b))
            if want("tp-global"):
                pol, ratio = global_ranking_policy(ctx.model, ctx.space, ctx.costs, b)
                arms.append(Arm(cell, "tp-global", pol, b, {"tp_pruning_ratio": ratio}))
            if want("seernet") and predictor is not None:
                arms += seernet_arm(ctx, predictor, cell, b, args)
    elif mode == "mixed":
        for frac in args.fractions:
            ref, channels = best_pruning(ctx, store, args, frac)
            for k in args.factors:
                cell, budget = Cell("mixed", frac, k), frac * full["flops"]
                b = {"flops": budget, "bitops": k * budget}
                info = {"pruning_from": ref}
                ub = Policy(channels, ctx.space.full_policy(BITOPS_FACTORS[k]).bits)
                # every method of the cell spends what uniform-bits spends: only the allocation differs
                eq = {"flops": budget, "bitops": ctx.costs.of_policy(ub)["bitops"]}
                if want("uniform-bits"):
                    arms.append(Arm(cell, "uniform-bits", ub, b, info))
                if want("hawq"):
                    sens = hawq_sensitivity(ctx, args, channels)
                    pol = hawq_policy(ctx.space, ctx.costs, channels, sens, eq)
                    arms.append(Arm(cell, "hawq", pol, b, {**info, "bitops_budget": eq["bitops"]}))
                if want("seernet") and predictor is not None:
                    arms += seernet_arm(ctx, predictor, cell, b, args, solve_budgets=eq)
    else:
        levels = {
            bits: mct_policy(ctx, {ly.name: bits for ly in ctx.space.free_layers})
            for bits in args.size_bits
        }
        mct = (
            mct_results(ctx, args, [kernel_bytes(ctx, p) for p in levels.values()])
            if want("mct")
            else None
        )
        for i, (bits, ub) in enumerate(levels.items()):
            cell = Cell("size", bits=bits)
            b = {"size": ctx.costs.of_policy(ub)["size"]}
            info = {"weights_memory": kernel_bytes(ctx, ub)}
            if want("uniform-bits"):
                arms.append(Arm(cell, "uniform-bits", ub, b, info))
            if want("hawq"):
                sens = hawq_sensitivity(ctx, args, ub.channels)
                arms.append(
                    Arm(
                        cell,
                        "hawq",
                        hawq_policy(ctx.space, ctx.costs, ub.channels, sens, b),
                        b,
                        info,
                    )
                )
            if mct is not None:
                r = mct[i]
                arms.append(Arm(cell, "mct-ptq", None, b, {**info, "mct": r}))
                arms.append(
                    Arm(
                        cell,
                        "mct-ft",
                        mct_policy(ctx, r["bits"]),
                        b,
                        {**info, "mct_weights_memory": r["weights_memory"]},
                    )
                )
            if want("seernet") and predictor is not None:
                arms += seernet_arm(ctx, predictor, cell, b, args)
    return arms


# --- running -----------------------------------------------------------------------------
def settings(args: argparse.Namespace, seed: int) -> CompressSettings:
    distill = {} if args.distill is None else {"distill": args.distill}
    return CompressSettings(steps=args.steps, seed=seed, **distill)


def run_arms(ctx: RunContext, arms: list[Arm], args: argparse.Namespace, store: RunStore) -> int:
    """Fine-tune and test every (arm, seed) not yet in the store; the number that failed
    (each said with its error; the others go on, and a rerun retries the failed ones)."""
    ident = identity(ctx)
    todo = [(a, s) for a in arms if a.policy is not None for s in args.seeds]
    failed = 0
    for arm in arms:  # WS/policies/<cell>-<method>.json: what bench_seeds.py and people read
        if arm.policy is not None:
            write_json(
                ctx.ws.path("policies", f"{arm.cell.name}-{arm.method}.json"), policy_doc(ctx, arm)
            )
    for n, (arm, seed) in enumerate(todo, 1):
        st = settings(args, seed)
        key = run_key(st, arm.policy, ident)
        if store.done(key):
            continue
        # seed 0 keeps its compressed model as WS/compressed/<cell>-<method> (bench_seeds.py reads it)
        name = f"{arm.cell.name}-{arm.method}" + ("" if seed == 0 else f"-s{seed}")
        print(f"=== [{n}/{len(todo)}] {name} ({key})", flush=True)
        doc = {**policy_doc(ctx, arm), "name": name}
        try:
            m = compress(ctx, doc, arm.policy, st)
        except Exception as exc:  # one failed run must not stop a night of others
            print(f"FAILED {name}: {type(exc).__name__}: {exc}", flush=True)
            failed += 1
            continue
        store.save(key, {
            "key": key, "name": name, "cell": arm.cell.name, "method": arm.method, "seed": seed,
            "settings": asdict(st), "identity": ident, "policy": arm.policy.to_json(), "costs": m["costs"],
            "test": m["accuracy"]["after_finetune"]["test"], "val": m["accuracy"]["after_finetune"]["val"],
            "test_before": m["accuracy"]["before_finetune"]["test"], "predicted": m.get("predicted"),
            "latency": m.get("latency"), "seconds": m["seconds"],
        })  # fmt: skip
        if seed != 0:  # the record keeps what matters; one exported model per policy is enough
            shutil.rmtree(ctx.ws.path("compressed", name), ignore_errors=True)
    return failed


def policy_doc(ctx: RunContext, arm: Arm) -> dict:
    """The arm's policy document, as ``seernet solve`` writes one (plus the arm's own notes)."""
    return {"name": f"{arm.cell.name}-{arm.method}", "method": arm.method, "space_fingerprint": ctx.space.fingerprint,
            "budgets": arm.budgets, "costs": ctx.costs.of_policy(arm.policy), "unpruned": ctx.costs.unpruned(),
            "policy": arm.policy.to_json(), **{k: v for k, v in arm.info.items() if k != "mct"}}  # fmt: skip


def arm_results(
    ctx: RunContext, arm: Arm, args: argparse.Namespace, store: RunStore
) -> dict | None:
    """Test accuracies over seeds and the policy's costs (None until every seed is done)."""
    if arm.policy is None:  # MCT's PTQ model, measured by mct_ptq.py; deterministic, one value
        r = arm.info["mct"]
        return {"tests": [r["test"]], "costs": {"weights_memory": r["weights_memory"]}}
    keys = [run_key(settings(args, s), arm.policy, identity(ctx)) for s in args.seeds]
    if not all(store.done(k) for k in keys):
        return None
    recs = [store.load(k) for k in keys]
    return {
        "tests": [r["test"] for r in recs],
        "costs": {**recs[0]["costs"], "weights_memory": kernel_bytes(ctx, arm.policy)},
    }


# --- reporting ---------------------------------------------------------------------------
def summarize(
    ctx: RunContext, arms: list[Arm], args: argparse.Namespace, store: RunStore
) -> list[dict]:
    rows = []
    for arm in arms:
        res = arm_results(ctx, arm, args, store)
        if res is None:
            continue
        m, s = mean_std(res["tests"])
        rows.append({"cell": arm.cell.name, "mode": arm.cell.mode, "method": arm.method, "mean": m, "std": s,
                     "tests": res["tests"], "costs": res["costs"], "budgets": arm.budgets,
                     "policy": None if arm.policy is None else arm.policy.to_json(),
                     "info": {k: v for k, v in arm.info.items() if k != "mct"}})  # fmt: skip
    return rows


def cost_text(row: dict, full: dict) -> str:
    c = row["costs"]
    if row["mode"] == "size":
        return f"{c['weights_memory'] / 1e3:.1f} kB weights"
    over = c["bitops"] > row["budgets"].get("bitops", float("inf")) * (1 + 1e-9)
    return (
        f"{100 * c['flops'] / full['flops']:.1f}% FLOPs, {c['bitops'] / c['flops']:.1f}x BitOPs/FLOPs"
        + (" (over)" if over else "")
    )


def tables(rows: list[dict], full: dict) -> tuple[str, str]:
    """Every (cell, method) with its costs and accuracy, and the per-cell verdicts for seernet."""
    detail = format_table(["cell", "method", "test % (mean +- std, n)", "costs"],
                          [[r["cell"], r["method"], f"{r['mean']:.2f} +- {r['std']:.2f} ({len(r['tests'])})",
                            cost_text(r, full)] for r in rows])  # fmt: skip
    verdicts = []
    for cell in dict.fromkeys(r["cell"] for r in rows):
        by = {r["method"]: r for r in rows if r["cell"] == cell}
        if "seernet" not in by:
            continue
        base = [m for m in BASELINES[by["seernet"]["mode"]] if m in by]
        if not base:
            continue
        best = max(base, key=lambda m: by[m]["mean"])
        gap = by["seernet"]["mean"] - by[best]["mean"]
        verdicts.append([cell, f"{by['seernet']['mean']:.2f} +- {by['seernet']['std']:.2f}", best,
                         f"{by[best]['mean']:.2f} +- {by[best]['std']:.2f}", f"{gap:+.2f}",
                         verdict(by["seernet"]["tests"], by[best]["tests"])])  # fmt: skip
    summary = format_table(
        ["cell", "seernet", "best baseline", "its accuracy", "gap", "seernet vs it"], verdicts
    )
    behind = [f"{v[0]} ({v[5]} vs {v[2]}, {v[4]})" for v in verdicts if v[5] != "win"]
    if verdicts:
        summary += "\nseernet not clearly ahead in: " + ("; ".join(behind) if behind else "none")
    else:
        summary = "no cell has both seernet and baseline results yet (is the seernet arm skipped?)"
    return detail, summary


def plot(rows: list[dict], base: float | None, path: Path) -> None:
    """Accuracy vs BitOPs (FLOPs cells) and vs weight memory (size cells), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    panels = ((axes[0], ("8bit", "mixed"), "bitops", 1e6, "BitOPs (M, log)"),
              (axes[1], ("size",), "weights_memory", 1e3, "weight memory (kB)"))  # fmt: skip
    for ax, modes, cost, unit, label in panels:
        sel = [r for r in rows if r["mode"] in modes and cost in r["costs"]]
        for method in dict.fromkeys(r["method"] for r in sel):
            rs = sorted((r for r in sel if r["method"] == method), key=lambda r: r["costs"][cost])
            ax.errorbar([r["costs"][cost] / unit for r in rs], [r["mean"] for r in rs], yerr=[r["std"] for r in rs],
                        marker="o", capsize=3, label=method, color=PLOT_COLORS.get(method))  # fmt: skip
        if base is not None:
            ax.axhline(base, color="grey", linestyle="--", label="base (float)")
        ax.set(xlabel=label, ylabel="test accuracy (%)")
        if cost == "bitops":
            ax.set_xscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(ctx: RunContext, rows: list[dict], args: argparse.Namespace) -> None:
    from seernet.data.train import accuracy

    full = ctx.costs.unpruned()
    base = accuracy(ctx.model, ctx.splits.test, ctx.device)
    detail, summary = tables(rows, full)
    print(f"base model (float): test {base:.2f}%\n{detail}\n\n{summary}")
    out, docs = Path(args.out), Path(args.docs)
    (out / "results.json").write_text(
        json.dumps({"base_test": base, "seeds": args.seeds, "rows": rows}, indent=2)
    )
    docs.mkdir(parents=True, exist_ok=True)
    plot(rows, base, docs / "end-to-end-anchors.png")
    (docs / "end-to-end-anchors.md").write_text(
        f"# End to end against the anchors\n\nGenerated by `benchmarks/bench_end_to_end.py` "
        f"(seeds {args.seeds}, fine-tuning steps {args.steps or 'compress default'}). Base model: test {base:.2f}%.\n\n"
        f"```\n{summary}\n```\n\n```\n{detail}\n```\n\n![accuracy vs cost](end-to-end-anchors.png)\n\n"
        f"## Protocol\n\n{__doc__.split(chr(10), 2)[2].split('Run it as a module')[0].strip()}\n"
    )  # fmt: skip
    print(
        f"summary: {docs / 'end-to-end-anchors.md'}; plot: {docs / 'end-to-end-anchors.png'}; data: {out / 'results.json'}"
    )


def print_plan(ctx: RunContext, arms: list[Arm]) -> None:
    full = ctx.costs.unpruned()
    rows = []
    for a in arms:
        c = {} if a.policy is None else ctx.costs.of_policy(a.policy)
        kb = a.info["mct"]["weights_memory"] if a.policy is None else kernel_bytes(ctx, a.policy)
        wbits = (
            ""
            if a.policy is None
            else " ".join(str(a.policy.bits[ly.name][0]) for ly in ctx.space.free_layers)
        )
        rows.append([a.cell.name, a.method, f"{100 * c['flops'] / full['flops']:.1f}" if c else "",
                     f"{c['bitops'] / (a.budgets.get('flops') or full['flops']):.2f}" if c else "",
                     f"{kb / 1e3:.1f}", wbits])  # fmt: skip
    print(
        format_table(
            [
                "cell",
                "method",
                "FLOPs %",
                "BitOPs / FLOPs budget",
                "weights kB",
                "weight bits (free layers)",
            ],
            rows,
        )
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    ctx = bench_context(out, Path(args.workdir), resolve_device(args.device))
    store = RunStore(out / "runs")
    predictor = seernet_predictor(ctx, Path(args.workdir)) if "seernet" in args.methods else None
    all_arms: list[Arm] = []
    failed = 0
    for mode in (
        m for m in MODES if m in args.modes
    ):  # 8-bit first: the mixed arms read its results
        arms = plan(ctx, args, store, predictor, mode)
        all_arms += arms
        if args.plan_only:
            continue
        failed += run_arms(ctx, arms, args, store)
    if args.plan_only:
        print_plan(ctx, all_arms)
        return
    report(ctx, summarize(ctx, all_arms, args, store), args)
    if failed:
        raise SystemExit(f"{failed} run(s) failed (see FAILED above); rerun to retry them")


if __name__ == "__main__":
    main()
