#!/usr/bin/env bash
# For the next session (not run: this session's device time was spent). Measure first: where the
# prefill and decode time goes on the final tree, per op, and which projections gain from the
# 128 x 128 tiles below 256 tokens (run47: from 128 tokens the 1.17B gained 10% at 192 while
# the 7.38B lost 1-7%, so a threshold per projection size may pay). base = main, w128 = branch
# next/wide128 (COOP_WIDE_PREFILL 128). Build both (strip, gzip into target/car3/base.gz and
# w128.gz). Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base w128; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/base
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & wait
for v in base w128; do for m in b32 b1; do for p in 128 192; do echo "=== profile $v $m pp$p"
  /tmp/bin/$v bench /tmp/$m.m -p $p -n 4 -r 2 --profile 2>&1 | grep -E "profile prefill|gemm|attention_prefill|glu|norm" | head -30; done; done; done
echo "=== profile base b32 pp512"; $T bench /tmp/b32.m -p 512 -n 4 -r 2 --profile 2>&1 | sed -n '/profile prefill/,$p' | head -40
echo "=== profile base b32 tg128"; $T bench /tmp/b32.m -p 16 -n 128 -r 2 --profile 2>&1 | sed -n '/profile decode/,$p' | head -40
