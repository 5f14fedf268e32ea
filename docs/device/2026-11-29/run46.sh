#!/usr/bin/env bash
# A/B: base = main 26a7064 (128 x 128 coop tiles with f16 input from COOP_WIDE_PREFILL = 512
# tokens, 128 x 64 with f32 input below), w256 = branch next/wide256 (the same from 256 tokens).
# The 16-byte f16 loads made the 128 x 128 tiles 19.6% faster after the threshold was measured
# (run4 of 11-28's fifth session: 128 x 64 22-24% faster at 64-256 tokens). Prediction: 7.38B
# pp256 and pp384 +0-5%, 1.17B (its 2048-row projections stay on 128 x 64) about the same.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base w256; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/base
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & wait
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base w256; do for p in 256 384 512; do one $v b32 -p $p -n 4; one $v b1 -p $p -n 4; done; done; done
