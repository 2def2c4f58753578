"""``report``: one picture and one table of everything a workspace holds.

Reads ``samples.h5`` (measured samples; those with strategy ``verify`` are solved
policies measured afterwards), ``policies/*.json`` (solved, predicted) and
``compressed/*/metrics.json`` (fine-tuned, test accuracy), and writes
``report/pareto.png`` and ``report/summary.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seernet.errors import UserError
from seernet.space.policy_document import PolicyDocument
from seernet.tables import format_table
from seernet.units import format_count
from seernet.workspace.artifacts import POLICIES_NAME, STORE_NAME
from seernet.workspace.folder import Workspace


def _read_all(paths: list[Path], read: Callable[[Path], Any], errors: tuple) -> list:
    """What ``read`` makes of each file, in name order; one raising ``errors`` is skipped."""
    docs = []
    for p in sorted(paths):
        try:
            docs.append(read(p))
        except errors:
            continue  # a half-written or foreign file is not worth failing the report over
    return docs


def _read_json_files(paths: list[Path]) -> list[dict]:
    read = lambda p: json.loads(p.read_text()) | {"_path": str(p)}  # noqa: E731
    return _read_all(paths, read, (json.JSONDecodeError, OSError))


def _read_policies(paths: list[Path]) -> list[PolicyDocument]:
    return _read_all(paths, PolicyDocument.load, (UserError, OSError))


def gather(ws: Workspace) -> dict:
    """Samples, solved policies and compressed models of a workspace."""
    from seernet.workspace.store import SampleStore

    out: dict = {
        "samples": None,
        "policies": _read_policies(list(ws.path(POLICIES_NAME).glob("*.json"))),
    }
    out["compressed"] = _read_json_files(list(ws.path("compressed").glob("*/metrics.json")))
    if ws.path(STORE_NAME).is_file():
        with SampleStore.open(ws.path(STORE_NAME)) as store:
            out["samples"] = {"accuracy": store.accuracy, "strategy": store.strategy, **store.costs}
    return out


SOLVED_STRATEGIES = ("verify", "refine")  # store rows that measure a solved policy


def plot(data: dict, path: Path) -> None:
    """Accuracy against FLOPs and against BitOPs, every source in its own style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    s = data["samples"]
    for ax, cost in zip(axes, ("flops", "bitops"), strict=True):
        if s is not None:
            verify = np.isin(s["strategy"], SOLVED_STRATEGIES)
            ax.scatter(
                s[cost][~verify],
                s["accuracy"][~verify],
                s=10,
                alpha=0.4,
                label="measured samples (val)",
            )
            ax.scatter(
                s[cost][verify],
                s["accuracy"][verify],
                marker="s",
                c="tab:green",
                label="solved, measured (val)",
            )
        predicted = [p for p in data["policies"] if p.predicted]  # LeGR's have no prediction
        if predicted:
            c = [p.costs[cost] for p in predicted]
            ax.errorbar(c, [p.predicted.mean for p in predicted],
                        yerr=[p.predicted.std for p in predicted], fmt="o", c="tab:orange",
                        capsize=3, label="solved, predicted")  # fmt: skip
        if data["compressed"]:
            c = [m["costs"][cost] for m in data["compressed"]]
            ax.scatter(c, [m["accuracy"]["after_finetune"]["test"] for m in data["compressed"]], marker="*", s=160, c="tab:red",
                       label="compressed + fine-tuned (test)")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("FLOPs (MACs)" if cost == "flops" else "BitOPs")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_rows(data: dict) -> list[list]:
    """One row per solved policy: costs, predicted, verified and compressed accuracy."""
    s = data["samples"]
    verified = {}
    if s is not None:
        for i in np.flatnonzero(np.isin(s["strategy"], SOLVED_STRATEGIES)):
            verified[(round(s["flops"][i]), round(s["bitops"][i]))] = s["accuracy"][i]
    compressed = {m.get("name"): m for m in data["compressed"]}
    rows = []
    for p in data["policies"]:
        key = (round(p.costs["flops"]), round(p.costs["bitops"]))
        if p.measured:  # solve --refine: the returned policy's own measurement
            verified[key] = p.measured.val_accuracy
        m = compressed.get(p.name)
        rows.append([
            p.name, format_count(p.costs["flops"]), format_count(p.costs["bitops"]),
            f"{p.predicted.mean:.2f} +/- {p.predicted.std:.2f}" if p.predicted else "-",
            f"{verified[key]:.2f}" if key in verified else "-",
            f"{m['accuracy']['after_finetune']['test']:.2f}" if m else "-",
        ])  # fmt: skip
    return rows


REPORT_HEADERS = [
    "policy",
    "FLOPs",
    "BitOPs",
    "predicted val %",
    "measured val %",
    "compressed test %",
]


def write_report_data(ws: Workspace) -> dict:
    """Write ``report/pareto.png`` and ``report/summary.md``; return what they show, JSON-able."""
    data = gather(ws)
    plot(data, ws.path("report", "pareto.png"))
    rows = summary_rows(data)
    n = 0 if data["samples"] is None else len(data["samples"]["accuracy"])
    head = f"{n} measured samples, {len(data['policies'])} solved policies, {len(data['compressed'])} compressed models"
    md = (
        f"# seernet report\n\n{head}\n\n"
        + format_table(REPORT_HEADERS, rows, markdown=True)
        + "\n\n![pareto](pareto.png)\n"
    )
    ws.path("report", "summary.md").write_text(md)
    return {
        "samples": n, "solved_policies": len(data["policies"]), "compressed_models": len(data["compressed"]),
        "headline": head, "rows": [dict(zip(REPORT_HEADERS, r, strict=True)) for r in rows],
        "files": [str(ws.path("report", "pareto.png")), str(ws.path("report", "summary.md"))],
    }  # fmt: skip


def write_report(ws: Workspace) -> str:
    """Write ``report/pareto.png`` and ``report/summary.md``; return the terminal table."""
    out = write_report_data(ws)
    return (
        out["headline"]
        + "\n"
        + format_table(REPORT_HEADERS, [list(r.values()) for r in out["rows"]])
    )
