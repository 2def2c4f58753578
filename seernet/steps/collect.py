"""``collect``: measure policies (random or active) into the workspace's sample store.

The sampler in ``search`` decides *which* policies to measure; this module measures
them with the evaluation protocol and appends each one to the store as soon as it is
known, so an interruption loses at most the policy in flight.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tqdm import tqdm

from search.levels import Levels
from search.sampler import RoundInfo, SamplerConfig, run_active
from seernet.compression.protocol import Protocol, evaluate_policy
from seernet.space.costs import COST_NAMES, CostModel
from seernet.space.policy import Policy, PolicySpace
from seernet.steps.backends import BackendConfig
from seernet.steps.context import RunContext
from seernet.steps.solve import ranking_table
from seernet.workspace.store import Sample, SampleStore, StoreSpec

# The warm-up's anchors: uniform keep fractions x uniform bit-widths (snapped to the
# space's choices), then Torch-Pruning's global-ranking allocation at FLOPs fractions
# spread over the range, at uniform bit-widths: the fast solve searches around exactly those
# allocations, so the predictor must know how they measure (fitted on a 200-sample store
# without them, it rated the anchors' allocations 3.9 points below their measurements on
# average: benchmarks/bench_prior_heldout.py). The first anchor is the unpruned
# highest-bit policy, the predictor's cap.
ANCHOR_KEEPS = (1.0, 0.5)
ANCHOR_BITS = (8, 4, 2)
RANKING_FLOPS = (0.25, 0.45, 0.65, 0.85)
RANKING_BITS = (8, 4, 3)


def anchor_policies(
    space: PolicySpace, ranking: np.ndarray | None = None, costs: CostModel | None = None
) -> list[Policy]:
    """The base policy, the ladder of uniform policies, then (given the global ranking's
    cached channel counts, ``seernet.steps.solve.ranking_table``, and the cost model) the
    least-pruned global-ranking allocation within each of ``RANKING_FLOPS`` of the unpruned
    FLOPs, at each of ``RANKING_BITS``: what every store measures first."""
    bits = dict.fromkeys([space.choices.bits[-1], *(space.nearest_bits(b) for b in ANCHOR_BITS)])
    out = [space.uniform_policy(k, b) for k in ANCHOR_KEEPS for b in bits]
    if ranking is None or costs is None:
        return out
    full = costs.of_policy(space.full_policy())["flops"]
    for b in dict.fromkeys(space.nearest_bits(b) for b in RANKING_BITS):
        X = space.encode_uniform(ranking, b)
        flops = costs.flops(torch.as_tensor(X)).numpy() / full
        for f in RANKING_FLOPS:
            fit = np.flatnonzero(flops <= f)
            if fit.size:  # rows run from least to most pruned
                out.append(space.decode(X[fit[0]]))
    return out  # the sampler drops repeats


def store_spec(ctx: RunContext, protocol: Protocol) -> StoreSpec:
    """What a store of this run must agree on before samples can be added."""
    space = ctx.space
    return StoreSpec(
        fingerprint=space.fingerprint, dim=space.dim, n_choices=space.n_choices,
        cost_names=list(COST_NAMES), model=ctx.config.model, dataset=ctx.config.dataset,
        protocol=protocol.to_json(),
    )  # fmt: skip


def raw_choices(ctx: RunContext, policy: Policy) -> tuple[int, ...]:
    """The store's raw-choice row of ``policy`` (``PolicySpace.raw_choices``)."""
    return ctx.space.raw_choices(policy)


@dataclass
class Measurer:
    """Measures encoded policies and appends each to the store with its costs."""

    ctx: RunContext
    store: SampleStore
    protocol: Protocol
    bar: tqdm | None = None
    allow_duplicate: bool = False  # solved policies are verified even if sampled before
    workers: int = 1  # evaluations in parallel, for the ETA
    _eta_said: bool = field(default=False, init=False, repr=False)

    def measure(self, x: np.ndarray, strategy: str, round_: int) -> float:
        """Evaluate one encoded policy in this process, append it, and return its accuracy."""
        policy = self.ctx.space.decode(x)
        ctx = self.ctx
        criterion = ctx.criterion(self.protocol.criterion)
        acc, seconds = evaluate_policy(
            ctx.model, ctx.space, policy, ctx.splits, self.protocol, ctx.device, criterion
        )
        self.record(x, acc, seconds, strategy, round_, policy)
        return acc

    def record(
        self, x: np.ndarray, acc: float, seconds: float, strategy: str, round_: int, policy: Policy | None = None,
    ) -> bool:  # fmt: skip
        """Append a measured policy with its costs; False when the store already holds it."""
        space = self.ctx.space
        policy = policy or space.decode(x)
        x = space.encode(policy)
        # A result that arrives twice (a retried task whose first run also reported) is
        # stored once; only solved policies may knowingly repeat.
        if not self.allow_duplicate and self.store.contains(x):
            return False
        # The store keeps the costs it was created with: a latency cost (present while a
        # solve --refine under a latency budget measures) belongs to a table, not the policy.
        costs = {
            k: v
            for k, v in self.ctx.costs.of_policy(policy).items()
            if k in self.store.spec.cost_names
        }
        self.store.append(
            Sample(encoded=x, choices=raw_choices(self.ctx, policy), accuracy=acc, costs=costs, strategy=strategy,
                   round=round_, seed=self.protocol.seed, seconds=seconds, time=time.time()),
            allow_duplicate=self.allow_duplicate,
        )  # fmt: skip
        if self.bar is not None:
            accs = self.store.accuracy
            self.bar.update(1)
            self.bar.set_postfix(best=f"{accs.max():.2f}", mean=f"{accs.mean():.2f}", refresh=False)
            if not self._eta_said:
                self._eta_said = True
                self.bar.write(
                    eta_line(seconds, self.bar.total - self.bar.n, self.workers), file=sys.stderr
                )
        return True


def format_duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.5 h`` or ``2.1 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def eta_line(seconds: float, remaining: int, workers: int = 1) -> str:
    """What collect says after its first sample: the measured cost of one and of the rest."""
    # The first sample's own evaluation time, not wall time since start: data and model
    # loading happen once and would inflate every later estimate.
    eta = seconds * max(remaining, 0) / max(workers, 1)
    parallel = f" with {workers} in parallel" if workers > 1 else ""
    return (f"measured {seconds:.1f} s per sample; {max(remaining, 0)} more to go: "
            f"ETA {format_duration(eta)}{parallel}")  # fmt: skip


def make_predictor_factory(
    ctx: RunContext, protocol: Protocol, backend: BackendConfig | None = None, runner=None
):  # returns a factory
    """Predictor factory for the active sampler: ``fit-predictor``'s model with a given seed
    (its spread is what the landing acquisition reads).

    The damage tables are measured (or read) on the first call, when the first active
    round starts: the warm-up needs no predictor, so its samples are stored at once and a
    collect killed during the warm-up never pays for them. With a parallel ``backend`` they
    are measured on its ``runner``'s workers, which would otherwise wait."""
    from predictor.prior_model import PriorModel
    from seernet.steps.sensitivity import damage_table, prior_tables

    tables: dict = {}

    def make(seed: int) -> PriorModel:
        if not tables:
            tables.update(prior_tables(ctx, damage_table(ctx, protocol, backend, runner)))
        return PriorModel(**tables, random_state=seed)

    return make


def numpy_cost(ctx: RunContext, name: str = "flops"):  # returns a function
    """The analytic cost as a numpy function of (N, D) encoded policies."""
    fn = ctx.costs.functions()[name]
    return lambda x: fn(
        torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(-1, ctx.space.dim))
    ).numpy()


def store_summary(store: SampleStore) -> dict:
    """The numbers of ``summary``: min, mean and max of accuracy, every cost and seconds per sample."""
    columns = {"accuracy": store.accuracy, **store.costs, "seconds": store.seconds}
    stats = {
        k: {"min": float(v.min()), "mean": float(v.mean()), "max": float(v.max())}
        for k, v in columns.items()
    }
    return {"samples": len(store), "path": str(store.path), **stats}


def collect(
    ctx: RunContext, store: SampleStore, n_samples: int, protocol: Protocol, sampler: SamplerConfig,
    backend: BackendConfig | None = None,
) -> None:  # fmt: skip
    """Measure policies until the store holds ``n_samples`` (resumes where it stopped).

    With a parallel backend a whole round is one ``evaluate`` call, so its batch runs in
    parallel; each result is appended as it arrives (any order), and the sampler still
    sees the round in proposal order, so the choices equal those of the local backend.
    """
    backend = backend or BackendConfig()
    if backend.parallel:  # a chunk never spans rounds, so this means "the whole round"
        sampler = replace(sampler, eval_chunk=max(n_samples, 1))
    already = len(store)
    runner = backend.make()
    fn = backend.evaluator(ctx, protocol)
    with tqdm(total=n_samples, initial=already, desc=f"collect ({sampler.strategy})", unit="policy",
              dynamic_ncols=True) as bar:  # fmt: skip
        measurer = Measurer(ctx, store, protocol, bar, workers=getattr(runner, "workers", 1))
        current = {"strategy": sampler.strategy, "round": 0}

        def evaluate(chunk: np.ndarray) -> np.ndarray:
            # Canonical encodings go out, so a worker decodes exactly what is stored.
            xs = [ctx.space.encode(ctx.space.decode(x)) for x in chunk]
            accs = np.full(len(xs), np.nan)
            for i, (acc, seconds) in runner.map_unordered(fn, xs):
                accs[i] = acc
                measurer.record(xs[i], acc, seconds, current["strategy"], current["round"])
            return accs

        def on_round(info: RoundInfo) -> None:
            current.update(strategy=info.strategy, round=info.round)
            std = "" if math.isnan(info.mean_std) else f", mean ensemble std {info.mean_std:.2f}"
            bar.set_description(f"collect round {info.round} ({info.strategy}{std})")

        stored_rounds = store.round if len(store) else None
        fns = ctx.costs.functions()
        anchors = anchor_policies(ctx.space, ranking_table(ctx), ctx.costs)
        factory = make_predictor_factory(ctx, protocol, backend, runner)
        try:
            run_active(
                Levels(ctx.space.levels()), evaluate, factory, n_samples, sampler,
                cost=numpy_cost(ctx), X=store.encoded if len(store) else None,
                y=store.accuracy if len(store) else None, rounds=stored_rounds, on_round=on_round,
                anchors=np.stack([ctx.space.encode(p) for p in anchors]),
                solver_costs={k: fns[k] for k in ("flops", "bitops") if k in fns},
                bit_dims=ctx.space.bit_dims(),
            )  # fmt: skip
        finally:
            runner.close()
