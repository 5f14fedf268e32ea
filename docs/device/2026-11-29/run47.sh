#!/usr/bin/env bash
# A/B: w256 = branch next/wide256 (128 x 128 tiles with f16 input from 256 tokens; run46: +10%
# at 256 tokens on both bodies), w128 = the same with COOP_WIDE_PREFILL = 128 (built from the
# branch with the constant changed, not committed). Prediction: w128 slower at 128 tokens
# (32 workgroups for a 4096-row projection), unclear at 192.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in w256 w128; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/w256
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & wait
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in w256 w128; do for p in 128 192; do one $v b32 -p $p -n 4; one $v b1 -p $p -n 4; done; done; done
