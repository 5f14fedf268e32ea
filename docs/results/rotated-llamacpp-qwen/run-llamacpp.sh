#!/usr/bin/env bash
# llama.cpp's types on rotated Qwen2.5-Coder-1.5B-Instruct (tlite rotate --seed 0), exported with
# tlite export-gguf; CHUNKS windows of 512 tokens of Brown (default 4), KLD against the F32 export's
# logits; TYPES (default Q4_K_M IQ4_XS Q4_0).
set -uo pipefail
cd "$(dirname "$0")/../../.."   # the project root
T=${TLITE:-./target/release/tlite}; B=.peer/bin; D=.cache/corpus/brown.txt; N=${CHUNKS:-4}; O=/tmp/qrot$N; mkdir -p $O
G=.cache/models/qwen2.5-coder-1.5b-instruct/qwen2.5-coder-1.5b-instruct.gguf
[ -d /tmp/qwen15 ] || $T import-gguf $G -o /tmp/qwen15
[ -d /tmp/qwen15-rot ] || $T rotate /tmp/qwen15 -o /tmp/qwen15-rot --seed 0
$T export-gguf /tmp/qwen15-rot --like $G -o $O/rot-f32.gguf --force
$B/llama-perplexity -m $O/rot-f32.gguf -f $D -c 512 --chunks $N -t 2 --kl-divergence-base $O/rot.kld > $O/base.log 2>&1
grep -E "Final estimate" $O/base.log
for t in ${TYPES:-Q4_K_M IQ4_XS Q4_0}; do
  $B/llama-quantize $O/rot-f32.gguf $O/rot-$t.gguf $t 2 > $O/q-$t.log 2>&1
  ls -la $O/rot-$t.gguf
  $B/llama-perplexity -m $O/rot-$t.gguf -f $D -c 512 --chunks $N -t 2 --kl-divergence-base $O/rot.kld --kl-divergence > $O/kld-$t.log 2>&1
  rm -f $O/rot-$t.gguf
  echo "== $t"; grep -E "Mean PPL|Mean    KLD|Mean KLD|Same top|ln\(PPL" $O/kld-$t.log | head -8
done
