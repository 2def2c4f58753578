#!/usr/bin/env bash
# The main job on the embedded default (ResNet-20, Fashion-MNIST, shipped weights):
# the whole pipeline, sized to finish within 10 minutes on 2 idle CPU cores (8 min 41 s at 5f198bb).
set -euo pipefail
cd "$(dirname "$0")/.."
W="${SEERNET_WORKDIR:-seernet-run}"
SAMPLES="${SEERNET_SAMPLES:-60}"
# collect's evaluations in this many local processes (one torch thread each); results do
# not depend on it (tests/test_backends.py). 2 = both cores of the project's machine.
WORKERS="${SEERNET_WORKERS:-2}"
S=.venv/bin/seernet

# One thread for numpy's and scipy's OpenBLAS (torch's BLAS is MKL, its threads are not
# affected). The predictor's fits (collect's active rounds, fit-predictor's folds, every
# refit of solve --refine) are least squares over small Jacobians, where a second BLAS
# thread only waits: on a busy 2-core machine one fit took 32-50 s with the default 2
# threads and 1.6 s with 1, fit-predictor 57 s against 12 s, with the same predictions.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"

# Each stage's wall time on stderr, so a slow run says where its time went.
stage() {
    local start=$SECONDS
    "$@"
    echo "main-job: $2 took $((SECONDS - start)) s" >&2
}

stage $S evaluate --workdir "$W"
stage $S collect --workdir "$W" --samples "$SAMPLES" --workers "$WORKERS"
stage $S fit-predictor --workdir "$W"
# --refine 1 measures each budget's fast answer (what `solve` without --refine returns; the
# predictor is refitted after each measurement, so later budgets see it): every accuracy the
# job prints for a policy is the method's own answer, measured, next to its prediction.
# `--refine 2` or 3 also measures the anchors the predictor rates highest (never returning
# below them): 25-110 s more per budget on 2 cores (HAWQ-V3's Hessian traces cost 40-90 s
# per FLOPs level), which took the job past 10 minutes (docs/results.md, the main job).
stage $S solve --workdir "$W" --flops 30%,50%,70% --bits mixed --refine "${SEERNET_REFINE:-1}"
# Compress the middle budget's policy (the 50% one).
policy=$(.venv/bin/python - "$W" <<'PY'
import glob, json, sys
files = sorted(glob.glob(f"{sys.argv[1]}/policies/flops-*_mixed.json"), key=lambda f: json.load(open(f))["costs"]["flops"])
print(files[len(files) // 2])
PY
)
stage $S compress "$policy" --workdir "$W"
stage $S report --workdir "$W"
echo "main-job: all stages took $SECONDS s" >&2
