#!/usr/bin/env bash
# (gemv_m0e4_big, the "after" binary's kernel, was reverted after this run: it lost 13% of decode; docs/PERF.md.)
# On the lent GPU, from the project root, carry [".peer/carry", ".gl"] with .peer/carry/tlite (this
# tree, release, stripped) and .peer/carry/tlite-base (the tree before gemv_m0e4_big):
#   1. the GEMV lab on the 7.38B body's large shapes: gemv_m0e4_big beside the wide, narrow and
#      the lab's subgroup candidate of the same shape (64 threads, 4 rows, 2 steps);
#   2. decode of a 4-layer Llama-3-8B body (hidden 4096, ffn 14336, vocab 49,152; M0E4 g64,
#      minmax), the binary before and after, alternated twice.
set -u
source .gl/enter.sh >/dev/null
C=.peer/carry; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/m8l4
$C/tlite lab gemv --shapes 4096x14336,14336x4096,49152x2048 --variants 64x4x2 2>&1 | tail -13 | tee "$OUT/lab-big.txt"
{ time { $C/tlite synth llama-8b -o $M --layers 4 --vocab 49152 | tail -1
         $C/tlite convert $M -o $M.m0e4 -g 64 --quantizer minmax | tail -1; }; } 2>&1 | tee "$OUT/model.txt"
for i in 1 2; do for b in tlite-base tlite; do
  echo "--- $b"; $C/$b bench $M.m0e4 -p 16 -n 128 -r 5 2>&1 | tail -2
done; done | tee "$OUT/ab.txt"
timeout 40 $C/tlite bench $M.m0e4 -p 16 -n 16 -r 1 --profile 2>&1 | tail -40 > "$OUT/profile.txt"
# Greedy tokens of both binaries on the body (different summation order: equal but for near ties).
for b in tlite-base tlite; do
  $C/$b run $M.m0e4 -p "The Fulton County Grand Jury said" -n 48 --json 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin); print('$b', d['tokens'])"
done | tee "$OUT/tokens.txt"
