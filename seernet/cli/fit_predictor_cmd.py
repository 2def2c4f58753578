"""``seernet fit-predictor``: cross-validated MLP ensemble, saved as WORKDIR/predictor.pt."""

from __future__ import annotations

import argparse

HELP = "cross-validate the MLP-ensemble predictor against ridge / GP / random forest, then fit and save it"
FOLDS = 5  # --folds: a CLI-only figure, no settings class owns it


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.cli.common import add_json_argument, add_seed_argument, add_workdir_argument

    add_workdir_argument(p)
    p.add_argument(
        "--folds", type=int, default=FOLDS, help="cross-validation folds (default: %(default)s)"
    )
    add_seed_argument(p, what="the folds and the ensemble's members")
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from seernet.cli.common import print_json
    from seernet.errors import UserError
    from seernet.steps.context import RunContext
    from seernet.steps.fit import (
        base_cap,
        cross_validate_samples,
        fit_and_save,
        load_samples,
        plot_cv,
        predictor_tables,
        trust_lines,
    )
    from seernet.workspace.artifacts import PREDICTOR_NAME
    from seernet.workspace.folder import Workspace

    if args.folds < 2:
        raise UserError(f"--folds must be at least 2, got {args.folds}")
    ws = Workspace(args.workdir)
    ctx = RunContext(ws, ws.read(), torch.device("cpu"))
    X, y, n_val = load_samples(ctx)
    tables = predictor_tables(ctx)
    start = time.perf_counter()
    cv = cross_validate_samples(X, y, args.folds, args.seed, tables)
    say = (lambda *a: None) if args.json else print  # --json: stdout is the JSON document
    say(
        f"{len(y)} samples, {X.shape[1]} dimensions, {args.folds}-fold cross-validation (same folds for every model):"
    )
    say(cv.table())
    model = fit_and_save(ctx, X, y, n_val, cv, args.seed, ws.path(PREDICTOR_NAME), tables)
    trust = trust_lines(model, cv, base_cap(X, y, n_val))
    for line in trust:
        say(line)
    plot = ws.path("report", "predictor.png")
    plot_cv(y, cv.oof_mean, cv.oof_std, plot)
    seconds = time.perf_counter() - start
    if args.json:
        scores = {
            name: {"rmse": s.rmse, "kendall_tau": s.kendall_tau, "spearman_rho": s.spearman_rho}
            for name, s in cv.scores.items()
        }
        print_json(
            {
                "samples": len(y),
                "dimensions": int(X.shape[1]),
                "folds": args.folds,
                "seed": args.seed,
                "cv": scores,
                "calibration": list(cv.calibration or []),
                "trust": trust,
                "predictor": str(ws.path(PREDICTOR_NAME)),
                "plot": str(plot),
                "seconds": seconds,
            }
        )
        return 0
    print(f"saved {ws.path(PREDICTOR_NAME)} and {plot} ({seconds:.1f} s)")
    return 0
