#!/bin/bash
# usage: benchmarks/rescore_fast_solve.sh NAME "STORE..." [TABLE.json]
#   -> benchmarks/out/fast-solve-STORE-NAME for each STORE (e.g. "kl200 kl60", "gr200 gr60")
# Copies each bench fast-solve-STORE (its workspace, anchors, measured policies and seeds),
# with TABLE.json put in as its damage table if given, refits the predictor with the code as
# it is now, solves and measures the 12 cells (bench_fast_solve_variants.py, the default
# solver), then re-measures the answers with protocol seeds 1 and 2 (bench_protocol_noise.py).
# The benches run side by side, one thread each.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
name=$1; stores=$2; table="${3:+$(realpath "$3")}"
cd "$ROOT/benchmarks/out"
for s in $stores; do
  d=fast-solve-$s-$name; rm -rf $d; mkdir -p $d; cp -r fast-solve-$s/ws $d/ws; cp fast-solve-$s/results.json $d/
  python3 - $s $d "$table" <<'PY'
import json, os, sys
s, d, table = sys.argv[1:]
src = f"fast-solve-{s}"
v = json.load(open(f"{src}/variants.json")) if os.path.isfile(f"{src}/variants.json") else {}
json.dump({k: x for k, x in v.items() if k.startswith("policy:")}, open(f"{d}/variants.json", "w"))
if os.path.isfile(f"{src}/noise.json"):
    json.dump(json.load(open(f"{src}/noise.json")), open(f"{d}/noise.json", "w"))
if table:
    new, old = json.load(open(table)), json.load(open(f"{d}/ws/sensitivity.json"))
    assert new["fingerprint"] == old["fingerprint"]
    json.dump(new, open(f"{d}/ws/sensitivity.json", "w"))
PY
done
cd "$ROOT"
for s in $stores; do
  d=benchmarks/out/fast-solve-$s-$name
  (OMP_NUM_THREADS=1 .venv/bin/seernet fit-predictor --workdir $d/ws > $d.log 2>&1 &&
   OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_fast_solve_variants.py --bench $d --variant "RISK=1" >> $d.log 2>&1 &&
   OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_protocol_noise.py --bench $d --seeds 1 2 --variants >> $d.log 2>&1) &
done
wait
for s in $stores; do echo "== $s $name"; grep "^RISK=1 \|^fast\[" benchmarks/out/fast-solve-$s-$name.log; done
