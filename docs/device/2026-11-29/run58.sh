#!/usr/bin/env bash
# Prepared for the next session (not run: no device time left). The side-by-side on main with the
# 128 x 128 coop GEMM's raw group word (C1, run55), for a same-call 7.38B pp512 ratio (this stop's 0.89x is
# an estimate across two calls): shared/peer/side-by-side.sh 1b, then 8b
# (llama.cpp 0c1e570); then, on the 7.38B body, llama.cpp's default pp512 again and with KHR
# cooperative matrices only (coopmat2 off), alternated with tlite's pp512; then tlite's pp9.
# Build first: cargo build --release -p tlite-cli; bash ../shared/peer/prepare-carry.sh.
# Carry [".peer/carry", ".gl"]. Logs go to $OUT as they are written.
mkdir -p $OUT
bash .peer/carry/side-by-side.sh 1b 2>&1 | tee $OUT/sbs-1b.txt
bash .peer/carry/side-by-side.sh 8b 2>&1 | tee $OUT/sbs-8b.txt
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp; T=.peer/carry/tlite
for r in 1 2; do
  echo "=== round $r: llama.cpp default (coopmat2), 7.38B pp512"; /tmp/lc/bin/llama-bench -m /tmp/m8b.q4_0.gguf -ngl 99 -fa 1 -p 512 -n 0 -r 3 2>&1 | grep -E "^\| +llama"
  echo "=== round $r: llama.cpp KHR cooperative matrices only, 7.38B pp512"; GGML_VK_DISABLE_COOPMAT2=1 /tmp/lc/bin/llama-bench -m /tmp/m8b.q4_0.gguf -ngl 99 -fa 1 -p 512 -n 0 -r 3 2>&1 | grep -E "^\| +llama"
  echo "=== round $r: tlite 7.38B pp512"; $T bench /tmp/m8b.m0e4 -p 512 -n 4 -r 3 2>&1 | grep -E "^pp"
done 2>&1 | tee $OUT/pp512.txt
for m in /tmp/m1b.m0e4 /tmp/m8b.m0e4; do echo -n "$m "; $T bench $m -p 9 -n 4 -r 5 2>&1 | grep -E "^pp9"; done | tee $OUT/pp9.txt
