"""Plot the fast-solve bench: per cell, the fast answer's gap to the best anchor.

For each bench folder (``bench_fast_solve.py``'s output, re-measured by
``bench_protocol_noise.py``; a copy scored by a variant alone, as ``rescore_fast_solve.sh``
makes, is read through that variant), one panel: the gap at the store's seed (dot) and on the
mean over every protocol seed (bar, with the seed-to-seed std of the difference), against
issue #22's lines at -0.3 and -1 points.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/plot_fast_solve.py --out docs/fast-solve.png \\
        --bench "200 samples=benchmarks/out/fast-solve-kl200" \\
        --bench "60 samples=benchmarks/out/fast-solve-kl60-add"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_protocol_noise import anchor_arms, arms_of, gaps_of, main_arm, seed_accuracies  # noqa: E402


def measured_seeds(bench: Path) -> list[int]:
    """The protocol seeds ``bench_protocol_noise.py`` measured (``noise.json``'s keys)."""
    path = bench / "noise.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run bench_protocol_noise.py --bench {bench} first")
    return sorted({int(k.split("|", 1)[0]) for k in json.loads(path.read_text())})


def gap_rows(bench: Path) -> list[tuple[str, float, float, float]]:
    """(cell, gap at the store's seed, gap on the seed mean, std of the gap over seeds) of the
    bench's fast answer against the cell's best anchor (by the seed mean)."""
    arms = arms_of(bench, variants=True)
    fast = main_arm(arms)
    seeds = measured_seeds(bench)
    done = json.loads((bench / "noise.json").read_text())
    rows = []
    for cell, cell_arms in arms.items():
        accs = seed_accuracies(cell_arms, done, seeds)
        best = max(anchor_arms(accs), key=lambda a: accs[a].mean())
        first, mean = gaps_of(accs, fast)
        rows.append((cell, float(first), float(mean), float((accs[fast] - accs[best]).std(ddof=1))))
    return rows


def plot(panels: dict[str, list[tuple[str, float, float, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False)
    for ax, (title, rows) in zip(axes[:, 0], panels.items(), strict=True):
        x = np.arange(len(rows))
        _, first, mean, std = zip(*rows, strict=True)
        ax.bar(x, mean, yerr=std, color="tab:blue", alpha=0.5, capsize=3, label="seed mean ± std")
        ax.plot(x, first, "o", color="tab:blue", label="store's seed")
        for y, style in ((0.0, "-"), (-0.3, "--"), (-1.0, ":")):
            ax.axhline(y, color="k", lw=0.8, ls=style)
        ax.set_xticks(x, [r[0].replace("flops", "") for r in rows], rotation=30, fontsize=8)
        ax.set_ylabel("fast - best anchor (points)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench", action="append", required=True, help='"TITLE=FOLDER"')
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    panels = {}
    for spec in args.bench:
        title, _, folder = spec.partition("=")
        panels[title] = gap_rows(Path(folder))
        for cell, first, mean, std in panels[title]:
            print(f"{title:12s} {cell:16s} {first:+.2f} {mean:+.2f} +/- {std:.2f}")
    plot(panels, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
