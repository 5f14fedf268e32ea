#!/usr/bin/env bash
# One call: the ops test of 3dc1789 (coop small tile 128 x 64) with cooperative matrices
# required; then the coop tile threshold (an experimental binary: TLITE_EXP_SMALL_MAX = the most
# rows that take the 128 x 64 tile, default 4096): base, every projection on 128 x 64
# (1000000), 4096-row projections on 128 x 128 (4095); pp512 on the 1.17B and 8L bodies (two
# rounds) and the 7.38B body (one round), pp2048 on the 8L body.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in tile ops; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/tile
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
( $T synth llama-8b -o /tmp/f8 --vocab 49152 && $T convert /tmp/f8 -o /tmp/f8.m -g 64 --quantizer minmax ) > /tmp/c4.log 2>&1 &
echo "=== ops"; TLITE_REQUIRE_COOPMAT=1 /tmp/bin/ops 2>&1 | grep -E "matmul_coop_small|covered|failed|panicked|test result" | head -12
wait; for i in 2 3 4; do tail -n1 /tmp/c$i.log; done
for r in 1 2; do for x in 4096 1000000 4095; do for m in b1 b8; do
  echo -n "round $r max=$x $m "; TLITE_EXP_SMALL_MAX=$x $T bench /tmp/$m.m -p 512 -n 8 -r 3 2>&1 | grep -E "^pp512"; done; done; done
for x in 4096 1000000 4095; do echo -n "max=$x f8 "; TLITE_EXP_SMALL_MAX=$x $T bench /tmp/f8.m -p 512 -n 8 -r 3 2>&1 | grep -E "^pp512"; done
for x in 4096 1000000 4095; do echo -n "max=$x b8 "; TLITE_EXP_SMALL_MAX=$x $T bench /tmp/b8.m -p 2048 -n 8 -r 3 2>&1 | grep -E "^pp2048"; done
