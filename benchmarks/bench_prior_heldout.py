"""The predictor on policies it never saw: fit on one store, score every other measurement.

Every store and fast-solve bench under ``benchmarks/out`` that was collected from the default
model with the default protocol measured its policies the same way (deterministic given the
policy), so together they are one pool of measured policies. This bench fits
``fit-predictor``'s model on the stores named by ``--train`` (their union) and scores the
rest of the pool above ``--above`` percent, by where each policy came from:

- ``bench-anchor``: the anchors ``bench_fast_solve.py`` measured (Torch-Pruning's global
  ranking at uniform bit-widths, HAWQ-V3's allocation);
- ``bench-fast``: fast-solve answers measured by those benches;
- ``store``: samples of the stores not trained on.

Per group: bias (predicted - measured; negative = the predictor is pessimistic), RMSE,
Kendall tau, the fraction within 2 std and the largest over-prediction. No measurement is
taken: it runs in seconds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_prior_heldout.py --train ws-new200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from seernet.tables import format_table
from seernet.workspace.store import SampleStore

OUT = Path(__file__).resolve().parent / "out"


def key(x: np.ndarray) -> tuple:
    return tuple(np.round(np.asarray(x, dtype=np.float64), 6))


def store_rows(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    with SampleStore.open(OUT / name / "samples.h5") as s:
        return np.asarray(s.encoded), np.asarray(s.accuracy), json.dumps(s.spec.protocol)


def bench_rows() -> list[tuple[str, np.ndarray, float]]:
    """(group, encoded, measured) of every measured arm of every fast-solve bench."""
    rows = []
    for f in sorted(OUT.glob("fast-solve-*/results.json")):  # other benches store other rows
        for arms in json.loads(f.read_text()).values():
            for arm, v in arms.items():
                if isinstance(v, dict) and "encoded" in v and v.get("measured") is not None:
                    group = "bench-fast" if arm == "fast" else "bench-anchor"
                    rows.append((group, np.asarray(v["encoded"]), float(v["measured"])))
    return rows


def pool(train: set[tuple], held: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Held-out policies by group, each once (repeats averaged), none of the training set."""
    acc: dict[tuple, tuple[str, np.ndarray, list[float]]] = {}
    for name in held:
        X, y, _ = store_rows(name)
        for x, v in zip(X, y, strict=True):
            if key(x) not in train:
                acc.setdefault(key(x), ("store", x, []))[2].append(float(v))
    for group, x, v in bench_rows():
        if key(x) not in train:
            acc.setdefault(key(x), (group, x, []))[2].append(v)
    groups: dict[str, tuple[list, list]] = {}
    for group, x, vs in acc.values():
        groups.setdefault(group, ([], []))
        groups[group][0].append(x)
        groups[group][1].append(float(np.mean(vs)))
    return {g: (np.array(a), np.array(b)) for g, (a, b) in groups.items()}


def fit(
    names: list[str], exponents: list[float | None] | None = None, weighted: bool = False
):  # a PriorModel
    """``fit-predictor``'s model on the union of the stores (the first one's damage tables),
    with ``PriorModel``'s ``exponents`` (per kind: pruning, weight bits, activation bits) if given."""
    import torch

    from seernet.steps.context import RunContext
    from seernet.steps.fit import make_predictor, predictor_tables, val_images
    from seernet.workspace.folder import Workspace

    X, y = (np.concatenate(v) for v in zip(*(store_rows(n)[:2] for n in names), strict=True))
    _, first = np.unique(np.round(X, 6), axis=0, return_index=True)
    X, y = X[np.sort(first)], y[np.sort(first)]
    ws = Workspace(OUT / names[0])
    ctx = RunContext(ws, ws.read(), torch.device("cpu"))
    protocol = json.loads(store_rows(names[0])[2])
    tables = predictor_tables(ctx, protocol)
    if exponents is not None:
        tables = {**tables, "exponents": exponents}
    if weighted:
        tables = {**tables, "weighted": True}
    model = make_predictor(X, y, 0, val_images(ctx, protocol), tables)
    return model, X, y


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", action="append", required=True, help="store folder under out/")
    p.add_argument("--above", type=float, default=75.0)
    p.add_argument("--exponents", help='per damage kind, e.g. "learn,1,1": PriorModel exponents '
                   "(pruning, weight bits, activation bits; learn = fitted)")  # fmt: skip
    p.add_argument("--weighted", action="store_true", help="PriorModel(weighted=True)")
    args = p.parse_args(argv)
    exponents = None
    if args.exponents:
        exponents = [None if e == "learn" else float(e) for e in args.exponents.split(",")]
    stores = sorted(d.name for d in OUT.glob("ws-*") if (d / "samples.h5").is_file())
    protocols = {store_rows(n)[2] for n in stores}
    if len(protocols) != 1:
        raise SystemExit(f"the stores under {OUT} were measured with {len(protocols)} protocols")
    model, X, y = fit(args.train, exponents, args.weighted)
    held = [n for n in stores if n not in args.train]
    rows = []
    for group, (Xg, yg) in sorted(pool({key(x) for x in X}, held).items()):
        keep = yg > args.above
        mean, std = model.predict(Xg[keep], return_std=True)
        r = mean - yg[keep]
        rows.append([group, str(int(keep.sum())), f"{r.mean():+.2f}", f"{np.sqrt((r**2).mean()):.2f}",
                     f"{kendalltau(mean, yg[keep])[0]:.3f}", f"{np.mean(np.abs(r / std) < 2):.0%}",
                     f"{r.max():+.2f}"])  # fmt: skip
    learned = (
        "" if exponents is None else f"; damage exponents {np.round(model.exponent_, 3).tolist()}"
    )
    print(f"trained on {', '.join(args.train)}: {len(y)} samples ({int((y > 80).sum())} above 80%){learned}; "
          f"held out: {', '.join(held)} and the benches' measurements, above {args.above:g}%")  # fmt: skip
    print(format_table(["group", "n", "bias", "RMSE", "tau", "within 2 std", "worst over"], rows))


if __name__ == "__main__":
    main()
