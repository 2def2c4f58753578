"""``seernet fit-predictor``: cross-validated MLP ensemble, saved as WORKDIR/predictor.pt."""

from __future__ import annotations

import argparse

HELP = "cross-validate the MLP-ensemble predictor against ridge / GP / random forest, then fit and save it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.cli.common import add_workdir_argument

    add_workdir_argument(p)
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from seernet.context import RunContext
    from seernet.errors import UserError
    from seernet.fit import (
        base_cap,
        cross_validate_samples,
        fit_and_save,
        load_samples,
        plot_cv,
        trust_lines,
    )
    from seernet.solve import PREDICTOR_NAME
    from seernet.workspace import Workspace

    if args.folds < 2:
        raise UserError(f"--folds must be at least 2, got {args.folds}")
    ws = Workspace(args.workdir)
    ctx = RunContext(ws, ws.read(), torch.device("cpu"))
    X, y, n_val = load_samples(ctx)
    start = time.perf_counter()
    cv = cross_validate_samples(X, y, args.folds, args.seed)
    print(f"{len(y)} samples, {X.shape[1]} dimensions, {args.folds}-fold cross-validation (same folds for every model):")
    print(cv.table())
    model = fit_and_save(ctx, X, y, n_val, cv, args.seed, ws.path(PREDICTOR_NAME))
    for line in trust_lines(model, cv, base_cap(X, y, n_val)):
        print(line)
    plot_cv(y, cv.oof_mean, cv.oof_std, ws.path("report", "predictor.png"))
    print(f"saved {ws.path(PREDICTOR_NAME)} and {ws.path('report', 'predictor.png')} ({time.perf_counter() - start:.1f} s)")
    return 0
