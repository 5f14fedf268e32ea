#!/usr/bin/env bash
# One call: the side-by-side with llama.cpp (shared/peer/side-by-side.sh 1b, then 8b) on the
# final tree (20e2339: coop GEMM tiles), tlite's 9-token prefill on both bodies; then the
# prefill attention's keys per tile (PK, today 16) at 8 and 32 (an experimental binary,
# TLITE_EXP_PK), alternated over two rounds, pp512 on the side-by-side's bodies.
# Carry [".peer/carry", ".gl", "target/car3"].
bash .peer/carry/side-by-side.sh 1b 2>&1 | tee /tmp/sbs-1b.txt
bash .peer/carry/side-by-side.sh 8b 2>&1 | tee /tmp/sbs-8b.txt
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
for m in $(ls -d /tmp/*.m0e4 2>/dev/null); do for r in 1 2; do echo -n "$m "; .peer/carry/tlite bench $m -p 9 -n 4 -r 5 2>&1 | grep -E "^pp9"; done; done
gunzip -c target/car3/pk.gz > /tmp/pk; chmod +x /tmp/pk
for r in 1 2; do for pk in 16 8 32; do for m in $(ls -d /tmp/*.m0e4 2>/dev/null); do
  echo -n "round $r PK=$pk $m "; TLITE_EXP_PK=$pk /tmp/pk bench $m -p 512 -n 8 -r 3 2>&1 | grep -E "^pp512"; done; done; done
