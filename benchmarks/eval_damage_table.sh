#!/bin/bash
# usage: benchmarks/eval_damage_table.sh NAME TABLE.json  -> benchmarks/out/fast-solve-{gr200,gr60}-NAME
# Copies each bench (its workspace, anchors, measured policies and seeds) with the table put
# in, refits, solves and measures the 12 cells (bench_fast_solve_variants.py, the default
# solver), then re-measures the answers with protocol seeds 1 and 2 (bench_protocol_noise.py).
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
name=$1; table="$(realpath "$2")"
cd "$ROOT/benchmarks/out"
for s in gr200 gr60; do
  d=fast-solve-$s-$name; rm -rf $d; mkdir -p $d; cp -r fast-solve-$s/ws $d/ws; cp fast-solve-$s/results.json $d/
  python3 - $s $d $table <<'PY'
import json, sys
s, d, table = sys.argv[1:]
v = json.load(open(f"fast-solve-{s}/variants.json"))
json.dump({k: x for k, x in v.items() if k.startswith("policy:")}, open(f"{d}/variants.json", "w"))
json.dump(json.load(open(f"fast-solve-{s}/noise.json")), open(f"{d}/noise.json", "w"))
src = json.load(open(table)); old = json.load(open(f"{d}/ws/sensitivity.json"))
assert src["fingerprint"] == old["fingerprint"]
json.dump(src, open(f"{d}/ws/sensitivity.json", "w"))
PY
done
cd "$ROOT"
for s in gr200 gr60; do
  d=benchmarks/out/fast-solve-$s-$name
  (OMP_NUM_THREADS=1 .venv/bin/seernet fit-predictor --workdir $d/ws > $d.log 2>&1 &&
   OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_fast_solve_variants.py --bench $d --variant "RISK=1" >> $d.log 2>&1 &&
   OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_protocol_noise.py --bench $d --seeds 1 2 --variants >> $d.log 2>&1) &
done
wait
for s in gr200 gr60; do echo "== $s $name"; grep "^RISK=1 \|^fast\[" benchmarks/out/fast-solve-$s-$name.log; done
