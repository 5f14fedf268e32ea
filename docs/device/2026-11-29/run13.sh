#!/usr/bin/env bash
# One call: the side-by-side with llama.cpp (shared/peer/side-by-side.sh 1b, then 8b) on the
# final tree (cd24150: the warm-up in `run`, RoPE and the KV write in the q/k/v GEMV), then tlite's 9-token prefill on both bodies.
# Carry [".peer/carry", ".gl"].
bash .peer/carry/side-by-side.sh 1b 2>&1 | tee /tmp/sbs-1b.txt
bash .peer/carry/side-by-side.sh 8b 2>&1 | tee /tmp/sbs-8b.txt
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
for m in $(ls -d /tmp/*.m0e4 2>/dev/null); do for r in 1 2; do echo -n "$m "; .peer/carry/tlite bench $m -p 9 -n 4 -r 5 2>&1 | grep -E "^pp9"; done; done
