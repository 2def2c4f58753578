#!/bin/bash
# usage: benchmarks/eval_damage_table.sh NAME TABLE.json  -> benchmarks/out/fast-solve-{gr200,gr60}-NAME
# Scores a damage table on the two stores' fast-solve benches (rescore_fast_solve.sh).
exec "$(dirname "$0")/rescore_fast_solve.sh" "$1" "gr200 gr60" "$2"
