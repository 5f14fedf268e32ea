#!/usr/bin/env bash
# One call on the final tree (f6d45ee + docs: decode_wide with 4 threads per key, bench's timed
# warm-up, prefill attention on cooperative matrices): the side-by-side with llama.cpp
# (shared/peer/side-by-side.sh 1b, then 8b), llama.cpp's pp512 on the 7.38B body with KHR
# cooperative matrices only (coopmat2 off: the extension tlite's kernels use), tlite's 9-token
# prefill on both bodies, then parity of a 130-token prefill step (a 4-layer body of the 7.38B's
# width, hd 128; run26 measured the 1.17B body's with this attention) with the final coop
# attention, and decode-path parity over 150 positions (decode_wide past 128 keys). Logs go to
# $OUT as they are written (the call may end at the session's device budget).
# Carry [".peer/carry", ".gl"].
mkdir -p $OUT
bash .peer/carry/side-by-side.sh 1b 2>&1 | tee $OUT/sbs-1b.txt
bash .peer/carry/side-by-side.sh 8b 2>&1 | tee $OUT/sbs-8b.txt
echo "=== llama.cpp Vulkan, KHR cooperative matrices only (coopmat2 off), 7.38B"
GGML_VK_DISABLE_COOPMAT2=1 /tmp/lc/bin/llama-bench -m /tmp/m8b.q4_0.gguf -ngl 99 -fa 1 -p 512 -n 0 -r 3 2>&1 | grep -E "^\| +llama|matrix cores"
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp; T=.peer/carry/tlite
for m in $(ls -d /tmp/*.m0e4 2>/dev/null); do echo -n "$m "; $T bench $m -p 9 -n 4 -r 5 2>&1 | grep -E "^pp9"; done
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
( $T synth llama-8b -o /tmp/p4 --layers 4 --vocab 49152 > /dev/null && $T convert /tmp/p4 -o /tmp/p4.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-1b -o /tmp/d4 --layers 4 --vocab 49152 > /dev/null && $T convert /tmp/d4 -o /tmp/d4.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
for m in /tmp/p4.m; do echo "=== parity $m --prompt-tokens 130 --max-batch 130 --forced 8"
  timeout 120 $T parity $m --data /tmp/txt --prompt-tokens 130 --max-batch 130 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
echo "=== parity d4 --prompt-tokens 8 --forced 150 --max-batch 1"
timeout 90 $T parity /tmp/d4.m --data /tmp/txt --prompt-tokens 8 --forced 150 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"
