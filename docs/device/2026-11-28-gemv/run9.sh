#!/usr/bin/env bash
# One call: short prefills after the split (2-15 tokens: gemv_m0e4 per token as before; 16-48:
# gemv_m0e4_tokens), new (.peer/carry/tlite) against 93bf313 (target/car/exp.gz), alternated:
# small-ab.sh on a mkmodel 1.17B body (with SmolLM2's tokenizer, for tlite run's 9-token prompt),
# then pp at 2-48 tokens on an 8-layer Llama-3-8B body. Carry [".gl", ".peer/carry", "target/car"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
T=.peer/carry/tlite
python3 .peer/carry/mkmodel.py 1b /tmp/m1b 2>&1 | tail -1; $T convert /tmp/m1b -o /tmp/m1b.m0e4 -g 64 2>&1 | tail -1
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
PROMPTS="2 9 16 32" bash docs/device/2026-11-28-gemv/small-ab.sh 1b
wait; tail -n1 /tmp/c3.log
for p in 2 9 16 32 48; do for b in old new old new; do
  echo "8L $b p=$p $(/tmp/bin/$b bench /tmp/b8.m -p $p -n 8 -r 3 2>/dev/null | grep -E '^pp')"; done; done
