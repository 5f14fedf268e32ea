#!/usr/bin/env bash
# The side-by-side on main 883e8f5 (f16 inputs for the 128 x 128 coop GEMMs, glu 4 elements per
# thread, run's timed warm-up): shared/peer/side-by-side.sh 1b, then 8b (llama.cpp 0c1e570),
# then tlite's 9-token prefill on both bodies. Logs go to $OUT as they are written.
# Carry [".peer/carry", ".gl"].
mkdir -p $OUT
bash .peer/carry/side-by-side.sh 1b 2>&1 | tee $OUT/sbs-1b.txt
bash .peer/carry/side-by-side.sh 8b 2>&1 | tee $OUT/sbs-8b.txt
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp; T=.peer/carry/tlite
for m in $(ls -d /tmp/*.m0e4 2>/dev/null); do echo -n "$m "; $T bench $m -p 9 -n 4 -r 5 2>&1 | grep -E "^pp9"; done | tee $OUT/pp9.txt
