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
    import torch

    from seernet.api.workflow import fit_predictor
    from seernet.cli.common import print_json
    from seernet.steps.context import RunContext
    from seernet.steps.fit import plot_cv
    from seernet.workspace.artifacts import PREDICTOR_NAME
    from seernet.workspace.folder import Workspace

    ws = Workspace(args.workdir)
    ctx = RunContext(ws, ws.read(), torch.device("cpu"))
    fitted = fit_predictor(ctx, args.folds, args.seed)
    cv = fitted.cv
    plot = ws.path("report", "predictor.png")
    plot_cv(fitted.y, cv.oof_mean, cv.oof_std, plot)
    if args.json:
        scores = {
            name: {"rmse": s.rmse, "kendall_tau": s.kendall_tau, "spearman_rho": s.spearman_rho}
            for name, s in cv.scores.items()
        }
        print_json(
            {
                "samples": len(fitted.y),
                "dimensions": int(ctx.space.dim),
                "folds": args.folds,
                "seed": args.seed,
                "cv": scores,
                "calibration": list(cv.calibration or []),
                "trust": fitted.trust,
                "predictor": str(ws.path(PREDICTOR_NAME)),
                "plot": str(plot),
                "seconds": fitted.seconds,
            }
        )
        return 0
    print(
        f"{len(fitted.y)} samples, {ctx.space.dim} dimensions, {args.folds}-fold cross-validation "
        "(same folds for every model):"
    )
    print(cv.table())
    for line in fitted.trust:
        print(line)
    print(f"saved {ws.path(PREDICTOR_NAME)} and {plot} ({fitted.seconds:.1f} s)")
    return 0
