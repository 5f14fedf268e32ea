#!/usr/bin/env bash
# Rotated Qwen2.5-Coder-1.5B over 16 x 512 windows of Brown: llama.cpp's Q4_K_M and IQ4_XS
# (run-llamacpp.sh with CHUNKS=16), then tlite M0E4 GPTQ g32 (run-tlite.sh's step 5 at 16
# windows), one after the other on this machine's 2 cores. Outputs in /tmp/qrot16.
set -uo pipefail
cd "$(dirname "$0")/../../.."   # the project root
T=${TLITE:-./target/release/tlite}; D=.cache/corpus/brown.txt; O=/tmp/qrot16; mkdir -p $O
CHUNKS=16 TYPES="Q4_K_M IQ4_XS" bash docs/results/rotated-llamacpp-qwen/run-llamacpp.sh
rm -f $O/rot-f32.gguf $O/rot.kld; rm -rf /tmp/qwen15
/usr/bin/time -f "%e s, max RSS %M KB" $T sweep /tmp/qwen15-rot --data $D --ctx 512 --chunks 16 \
  --device cpu --configs m0e4-search+imp+gptq@32 --json $O/qwen-rot-gptq-16.json
