"""Where policy evaluations run: in this process, in a pool of processes, or as Ray tasks.

A backend only *computes*: it maps an evaluation function over encoded policies and
yields ``(index, result)`` pairs as they finish, in any order. The caller (``collect``)
stays the only writer of the sample store, so no worker ever opens it.

Results do not depend on the backend: an evaluation is seeded by the protocol alone,
and every worker process runs torch with an explicit thread count, so the same policy
gives the same accuracy here, in a pool process or on a Ray worker (given the same
thread count; float reductions may differ across thread counts).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from seernet.errors import UserError

if TYPE_CHECKING:
    from seernet.compression.protocol import Protocol
    from seernet.steps.context import RunContext

BACKENDS = ("local", "ray")
RAY_MISSING = "Ray is not installed: pip install 'seernet[ray]'"
EvalFn = Callable[[np.ndarray], Any]


# ------------------------------------------------------------------ what a worker runs


def measure_encoded(ctx: RunContext, protocol: Protocol, x: np.ndarray) -> tuple[float, float]:
    """Accuracy (%) and seconds of one encoded policy, measured with ``ctx``'s base model."""
    from seernet.compression.protocol import evaluate_policy

    return evaluate_policy(
        ctx.model, ctx.space, ctx.space.decode(x), ctx.splits, protocol, ctx.device,
        ctx.criterion(protocol.criterion),
    )  # fmt: skip


@lru_cache(maxsize=2)
def _worker_context(workdir: str, device: str) -> RunContext:
    """The run's context, built once per worker process (data and model load take seconds)."""
    import torch

    from seernet.steps.context import RunContext
    from seernet.workspace.folder import Workspace

    ws = Workspace(workdir)
    return RunContext(ws, ws.read(), torch.device(device))


@dataclass(frozen=True)
class WorkspaceEvaluator:
    """Picklable evaluation function for worker processes: workspace path + protocol.

    Workers read the workspace (``seernet.json``, weights, data) themselves, so on a
    multi-node Ray cluster the workspace and dataset must sit at the same paths on
    every node (a shared file system).
    """

    workdir: str
    device: str
    protocol: Protocol
    threads: int = 1

    def __call__(self, x: np.ndarray) -> tuple[float, float]:
        import torch

        # Set on every call: Ray reuses worker processes across tasks of other callers.
        torch.set_num_threads(self.threads)
        return measure_encoded(_worker_context(self.workdir, self.device), self.protocol, x)


@dataclass(frozen=True)
class DamageShareEvaluator:
    """Picklable: one share of the damage table's variants (``variant_damages``), measured in a
    worker process from the workspace, as ``WorkspaceEvaluator`` measures a policy."""

    workdir: str
    device: str
    protocol: Protocol
    threads: int = 1

    def __call__(self, indices: np.ndarray):  # a VariantDamages
        import torch

        from seernet.compression.sensitivity import variant_damages

        torch.set_num_threads(self.threads)
        ctx = _worker_context(self.workdir, self.device)
        return variant_damages(ctx.model, ctx.space, ctx.splits, self.protocol, ctx.device,
                              ctx.criterion(self.protocol.criterion), indices)  # fmt: skip


# ----------------------------------------------------------------------- the backends


class LocalBackend:
    """Evaluate in this process, one policy after another (the default)."""

    workers = 1

    def map_unordered(self, fn: EvalFn, xs: Sequence[np.ndarray]) -> Iterator[tuple[int, Any]]:
        """``(i, fn(xs[i]))`` for every ``i``, in order."""
        for i, x in enumerate(xs):
            yield i, fn(x)

    def close(self) -> None:
        """Nothing to release."""


def _init_pool_worker(threads: int, parent: int) -> None:
    import torch

    torch.set_num_threads(threads)
    # A pool worker outlives a SIGKILLed driver (it waits on its task queue forever);
    # watch the parent and leave with it, so a killed collect leaves no processes behind.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


class ProcessBackend:
    """Evaluate in ``workers`` spawned processes on this machine.

    Spawn, not fork: a forked child would inherit the parent's torch thread pools and
    open HDF5 handles. A worker that dies aborts the run; ``collect`` resumes it.
    """

    def __init__(self, workers: int, threads: int = 1) -> None:
        import multiprocessing

        self.workers = workers
        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_pool_worker, initargs=(threads, os.getpid()),
        )  # fmt: skip

    def map_unordered(self, fn: EvalFn, xs: Sequence[np.ndarray]) -> Iterator[tuple[int, Any]]:
        """``(i, fn(xs[i]))`` as each finishes."""
        futures = {self._pool.submit(fn, x): i for i, x in enumerate(xs)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield futures[f], f.result()
        except BrokenProcessPool as exc:
            raise UserError(
                "a collect worker process died (out of memory?); finished samples are stored: "
                "run the same command again to resume"
            ) from exc
        finally:
            for f in pending:
                f.cancel()

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def import_ray():  # returns the ray module
    """``ray``, or a UserError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UserError(RAY_MISSING) from exc
    return ray


class RayBackend:
    """Evaluate each policy as a Ray task; tasks whose worker dies are retried (bounded).

    Without ``address`` a private local cluster with ``workers * cpus_per_task`` CPUs is
    started (and stopped by ``close``); with one, the driver joins that cluster.
    At most ``workers`` tasks are in flight, so a shared cluster is not flooded.
    """

    def __init__(
        self, workers: int | None = None, address: str | None = None, cpus_per_task: float = 1.0,
        gpus_per_task: float = 0.0, max_retries: int = 3,
    ) -> None:  # fmt: skip
        self._ray = ray = import_ray()
        self._owns_cluster = not ray.is_initialized()
        if self._owns_cluster:
            # Quiet: Ray's start-up notices would break the CLI's one-line error contract.
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.ERROR}  # fmt: skip
            if address:
                kwargs["address"] = address
            else:
                n = workers or os.cpu_count() or 1
                kwargs["num_cpus"] = max(1, math.ceil(n * cpus_per_task))
                kwargs["num_gpus"] = math.ceil(n * gpus_per_task)
            try:
                ray.init(**kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                reason = " ".join(str(exc).split())[:160]
                raise UserError(
                    f"cannot start or reach the Ray cluster ({reason}): check --address"
                ) from exc
        # Default: as many tasks in flight as the cluster has room for.
        room = ray.cluster_resources().get("CPU", 1.0) / cpus_per_task
        self.workers = workers or max(1, int(room))
        # Retries cover system failures only (worker or node death), never a Python
        # exception in the evaluation: that would fail again the same way.
        self._task = ray.remote(_run_task).options(
            num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=max_retries
        )

    def map_unordered(self, fn: EvalFn, xs: Sequence[np.ndarray]) -> Iterator[tuple[int, Any]]:
        """``(i, fn(xs[i]))`` as each task finishes (``ray.wait``)."""
        ray = self._ray
        fn_ref = ray.put(fn)
        queue = list(enumerate(xs))
        running: dict[Any, int] = {}
        try:
            while queue or running:
                while queue and len(running) < self.workers:
                    i, x = queue.pop(0)
                    running[self._task.remote(fn_ref, np.asarray(x))] = i
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    i = running.pop(ref)
                    yield i, self._get(ref)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)

    def _get(self, ref: Any) -> Any:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, UserError):
                raise UserError(str(exc.cause)) from exc
            raise
        except ray.exceptions.RayError as exc:  # worker or node lost more often than retried
            raise UserError(
                f"Ray gave up on an evaluation ({type(exc).__name__}) after --max-retries retries; "
                "finished samples are stored: run the same command again to resume"
            ) from exc

    def close(self) -> None:
        """Shut down the cluster if this backend started it."""
        if self._owns_cluster and self._ray.is_initialized():
            self._ray.shutdown()


def _run_task(fn: EvalFn, x: np.ndarray) -> Any:
    return fn(x)


@dataclass(frozen=True)
class BackendConfig:
    """How ``collect`` runs evaluations; validated before anything is written."""

    backend: str = "local"
    workers: int | None = None  # None: 1 in-process; Ray fills its cluster
    threads_per_worker: int | None = None  # None: in-process keeps torch's setting; workers 1
    address: str | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.workers is not None and self.workers < 1:
            raise UserError(f"--workers must be at least 1, got {self.workers}")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise UserError(
                f"--threads-per-worker must be at least 1, got {self.threads_per_worker}"
            )
        if self.cpus_per_task <= 0 or self.gpus_per_task < 0 or self.max_retries < 0:
            raise UserError("--cpus-per-task must be > 0, --gpus-per-task and --max-retries >= 0")
        if (self.address or self.gpus_per_task) and self.backend != "ray":
            raise UserError(
                "--address and --gpus-per-task only apply to --backend ray; locally use --device"
            )

    @property
    def parallel(self) -> bool:
        """Whether evaluations run outside this process (and a round's batch in parallel)."""
        return self.backend == "ray" or (self.workers or 1) > 1

    def check_available(self) -> None:
        """Fail early (nothing written yet) when the backend's package is missing."""
        if self.backend == "ray":
            import_ray()

    def make(self) -> LocalBackend | ProcessBackend | RayBackend:
        """Start the backend."""
        threads = self.threads_per_worker or 1
        if self.backend == "ray":
            return RayBackend(
                self.workers, self.address, self.cpus_per_task, self.gpus_per_task, self.max_retries
            )
        if self.workers is not None and self.workers > 1:
            return ProcessBackend(self.workers, threads)
        if self.threads_per_worker is not None:
            import torch

            torch.set_num_threads(threads)
        return LocalBackend()

    def evaluator(self, ctx: RunContext, protocol: Protocol) -> EvalFn:
        """The evaluation function for this backend: in-process with ``ctx``, else by workspace path."""
        if not self.parallel:
            return lambda x: measure_encoded(ctx, protocol, x)
        return WorkspaceEvaluator(*self._worker_args(ctx, protocol))

    def damage_evaluator(self, ctx: RunContext, protocol: Protocol) -> DamageShareEvaluator:
        """What a worker runs for one share of the damage table (parallel backends only)."""
        return DamageShareEvaluator(*self._worker_args(ctx, protocol))

    def _worker_args(self, ctx: RunContext, protocol: Protocol) -> tuple:
        # A task given a GPU sees it as its only CUDA device, whatever the driver has.
        device = "cuda" if self.gpus_per_task > 0 else str(ctx.device)
        return str(os.path.abspath(ctx.ws.root)), device, protocol, self.threads_per_worker or 1


__all__ = [
    "BACKENDS", "BackendConfig", "DamageShareEvaluator", "LocalBackend", "ProcessBackend", "RayBackend",
    "WorkspaceEvaluator", "import_ray", "measure_encoded",
]  # fmt: skip
