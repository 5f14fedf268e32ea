#!/usr/bin/env bash
# One call: the GEMV lab's candidates (code decode h/m/u, prefetch p) on the decode shapes, then
# pp512/tg128 of three binaries alternated over two rounds: dc (HEAD, attention in loop form,
# 11c18a3), dcv2 (the unrolled attention of 000f968), dc64 (HEAD with 64 queries per prefill
# attention workgroup). Carry [".gl", "target/car"] (the binaries gzipped).
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in dc dc64 dcv2; do gunzip -c target/car/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/dc
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
V=64x4x2,64x4x2m,64x4x2u,64x4x2p,64x4x2mp,32x4x4,32x4x4m,128x8x1,128x8x1m,128x8x1mp,128x4x2,128x4x2m,128x4x2mp,256x4x1mp,128x2x2mp,256x8x1mp
$T lab gemv --shapes 2048x2048,8192x2048,2048x8192,4096x4096,28672x4096,14336x4096,4096x14336 --variants $V --allocations 2 2>&1
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log
for r in 1 2; do for b in dc dcv2 dc64; do for m in b1 b8; do echo "--- round $r $b $m"; /tmp/bin/$b bench /tmp/$m.m -p 512 -n 128 -r 3 2>&1 | grep -E "pp512|tg128"; done; done; done
