#!/usr/bin/env bash
# (run as one command line on the warm machine after run42; base = main 222727b.) The GEMV lab
# with each matrix in one copy that stays in the L2 (--rotate-mib 1) against copies rotated past
# it (160), two allocations each, alternated twice: how much faster the decode GEMVs run when
# their weights come from the L2 (a bound on prefetching the next op's weights during
# latency-bound ops such as decode attention).
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp; T=/tmp/bin/base; [ -x $T ] || { mkdir -p /tmp/bin; gunzip -c target/car3/base.gz > $T; chmod +x $T; }; for rot in 160 1 160 1; do echo "=== lab gemv --rotate-mib $rot"; $T lab gemv --rotate-mib $rot -r 7 --shapes 2048x2048,4096x4096,6144x4096,8192x2048,2048x8192 --allocations 2 2>&1 | grep -v "^adapter"; done 2>&1 | tee $OUT/run43.txt | tail -c 9000
