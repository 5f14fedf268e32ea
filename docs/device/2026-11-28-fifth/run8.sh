#!/usr/bin/env bash
# One call: 4096-row projections on the 128 x 128 coop tiles (the tree, COOP_LARGE_MIN_ROWS =
# 4096) against the 128 x 64 tiles (TLITE_EXP_LARGE_MIN=4097; an experimental binary) at
# prefill steps of 64, 128, 256 and 512 tokens on the 8L body, alternated over two rounds: does
# the tile need choosing per step?
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; gunzip -c target/car3/lm.gz > /tmp/bin/lm; chmod +x /tmp/bin/lm; T=/tmp/bin/lm
$T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 > /dev/null && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax 2>&1 | tail -n1
for r in 1 2; do for x in 4096 4097; do for p in 64 128 256 512; do
  echo -n "round $r large_min=$x b8 "; TLITE_EXP_LARGE_MIN=$x $T bench /tmp/b8.m -p $p -n 4 -r 5 2>&1 | grep -E "^pp"; done; done; done
