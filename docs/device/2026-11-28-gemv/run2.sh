#!/usr/bin/env bash
# One call: (1) knock-out of the code decode in the GEMV lab (an uncommitted build: variants
# with suffix u replaced by a decode-free dot, one AND/OR per word, results wrong by design and
# not checked); (2) plain projections (o, down, LM head) on the narrow GEMV (default of that build)
# vs the wide one (TLITE_EXP_WIDE=1), alternated, same binary; (3) decode profiles.
# Carry [".gl", "target/car"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in dc ko; do gunzip -c target/car/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/ko
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
V=128x8x1,128x8x1u,64x4x2,64x4x2u,32x4x4,32x4x4u,256x4x1,256x4x1u,128x4x2,128x4x2u
$T lab gemv --shapes 28672x4096,4096x14336,4096x4096,2048x2048 --variants $V --allocations 2 2>&1 | grep -E "copy kernel|#2|^\| shape"
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log
for r in 1 2; do for w in narrow wide; do for m in b1 b8; do echo "--- round $r $w $m"
  if [ $w = wide ]; then export TLITE_EXP_WIDE=1; else unset TLITE_EXP_WIDE; fi
  $T bench /tmp/$m.m -p 512 -n 128 -r 3 2>&1 | grep -E "pp512|tg128"; done; done; done
unset TLITE_EXP_WIDE
for m in b1 b8; do echo "=== profile $m (narrow plain)"; $T bench /tmp/$m.m -p 512 -n 128 -r 1 --profile 2>&1 | grep -B1 -A14 "profile decode"; done
