#!/usr/bin/env bash
# The main job on the embedded default (ResNet-20, Fashion-MNIST, shipped weights):
# the whole pipeline, sized to finish within about 15 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
W="${SEERNET_WORKDIR:-seernet-run}"
SAMPLES="${SEERNET_SAMPLES:-60}"
S=.venv/bin/seernet

$S evaluate --workdir "$W"
$S collect --workdir "$W" --samples "$SAMPLES"
$S fit-predictor --workdir "$W"
# --refine measures each solved policy (and up to 3 per budget, refitting in between):
# every accuracy the job prints for a policy is a measurement next to its prediction.
$S solve --workdir "$W" --flops 30%,50%,70% --bits mixed --refine "${SEERNET_REFINE:-3}"
# Compress the middle budget's policy (the 50% one).
policy=$(.venv/bin/python - "$W" <<'PY'
import glob, json, sys
files = sorted(glob.glob(f"{sys.argv[1]}/policies/flops-*_mixed.json"), key=lambda f: json.load(open(f))["costs"]["flops"])
print(files[len(files) // 2])
PY
)
$S compress "$policy" --workdir "$W"
$S report --workdir "$W"
