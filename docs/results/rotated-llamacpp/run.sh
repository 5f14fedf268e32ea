#!/usr/bin/env bash
# llama.cpp's types on rotated SmolLM2 (tlite rotate --seed 0), exported with tlite export-gguf.
set -uo pipefail
cd "$(dirname "$0")/../../.."   # the project root
B=.peer/bin; D=.cache/corpus/brown.txt; O=/tmp/rotgg; mkdir -p $O
# The rotated checkpoint, and an F16 GGUF of SmolLM2 whose metadata the export copies.
[ -d /tmp/smollm2-rot ] || ./target/release/tlite rotate .cache/hf/smollm2-135m-instruct -o /tmp/smollm2-rot --seed 0
[ -f /tmp/smol-f16.gguf ] || $B/llama-quantize --allow-requantize .cache/models/smollm2-135m-instruct/smollm2-135m-instruct.gguf /tmp/smol-f16.gguf F16 2
./target/release/tlite export-gguf /tmp/smollm2-rot --like /tmp/smol-f16.gguf -o $O/rot-f32.gguf --force
$B/llama-perplexity -m $O/rot-f32.gguf -f $D -c 512 --chunks 8 -t 2 --kl-divergence-base $O/rot.kld > $O/base.log 2>&1
grep -E "Final estimate" $O/base.log
for t in Q4_K_M IQ4_XS Q4_0; do
  $B/llama-quantize $O/rot-f32.gguf $O/rot-$t.gguf $t 2 > $O/q-$t.log 2>&1
  ls -la $O/rot-$t.gguf
  $B/llama-perplexity -m $O/rot-$t.gguf -f $D -c 512 --chunks 8 -t 2 --kl-divergence-base $O/rot.kld --kl-divergence > $O/kld-$t.log 2>&1
  echo "== $t"; grep -E "Mean PPL|Mean    KLD|Mean KLD|Same top|ln\(PPL" $O/kld-$t.log | head -8
done
# tlite on the same checkpoint and windows (CPU reference; GPTQ from 8 calibration windows at the end of Brown).
./target/release/tlite sweep /tmp/smollm2-rot --data $D --ctx 512 --chunks 8 --device cpu \
  --configs m0e4-search+imp+gptq@32 --json $O/tlite-g32.json
./target/release/tlite sweep /tmp/smollm2-rot --data $D --ctx 512 --chunks 8 --device cpu \
  --configs m0e4-search+imp+gptq@16 --json $O/tlite-g16.json
