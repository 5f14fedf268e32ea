#!/usr/bin/env bash
# For the next session (not run: no device time left): the side-by-side on the final tree of the
# fifth session (main, with the 16-byte f16 loads of run36, which run34's call predates):
# shared/peer/side-by-side.sh 1b, then 8b (llama.cpp 0c1e570), llama.cpp's 7.38B pp512 with KHR
# cooperative matrices only, then tlite's 9-token prefill. Logs go to $OUT as they are written.
# Build first: cargo build --release -p tlite-cli; bash ../shared/peer/prepare-carry.sh.
# Carry [".peer/carry", ".gl"].
mkdir -p $OUT
bash .peer/carry/side-by-side.sh 1b 2>&1 | tee $OUT/sbs-1b.txt
bash .peer/carry/side-by-side.sh 8b 2>&1 | tee $OUT/sbs-8b.txt
echo "=== llama.cpp Vulkan, KHR cooperative matrices only (coopmat2 off), 7.38B" | tee $OUT/khr.txt
GGML_VK_DISABLE_COOPMAT2=1 /tmp/lc/bin/llama-bench -m /tmp/m8b.q4_0.gguf -ngl 99 -fa 1 -p 512 -n 0 -r 3 2>&1 | grep -E "^\| +llama|matrix cores" | tee -a $OUT/khr.txt
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp; T=.peer/carry/tlite
for m in $(ls -d /tmp/*.m0e4 2>/dev/null); do echo -n "$m "; $T bench $m -p 9 -n 4 -r 5 2>&1 | grep -E "^pp9"; done | tee $OUT/pp9.txt
