#!/usr/bin/env bash
# The main job on the embedded default (ResNet-20, Fashion-MNIST, shipped weights):
# evaluate the base model, measure policies, fit the predictor, solve budgets.
set -euo pipefail
cd "$(dirname "$0")/.."
W="${SEERNET_WORKDIR:-seernet-run}"
SAMPLES="${SEERNET_SAMPLES:-60}"
# One BLAS/OpenMP thread per process: on a 2-core machine several threads spin-wait badly.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
S=.venv/bin/seernet

$S evaluate --workdir "$W"
$S collect --workdir "$W" --samples "$SAMPLES"
$S fit-predictor --workdir "$W"
$S solve --workdir "$W" --flops 30%,50%,70% --bits mixed
