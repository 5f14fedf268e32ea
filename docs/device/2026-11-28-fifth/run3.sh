#!/usr/bin/env bash
# One call: the coop GEMM's tile for projections of <= 4096 rows (today 64 rows x 64 tokens,
# 128 threads) against 128x64 (256 threads), 64x128 (128 threads) and the large kernel's
# 128x128 (TLITE_EXP_SMALL_MAX=0), one experimental binary, env switches, alternated over two
# rounds: pp512 on the 1.17B and 8L bodies; parity of each on a 130-token prefill.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; gunzip -c target/car3/tile.gz > /tmp/bin/t; chmod +x /tmp/bin/t; T=/tmp/bin/t
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
wait; for i in 2 3; do tail -n1 /tmp/c$i.log; done
v() { case $1 in
  base) env "${@:2}";; t128x64) env TLITE_EXP_SMALL_TILE=128x64 "${@:2}";;
  t64x128) env TLITE_EXP_SMALL_TILE=64x128 "${@:2}";; big) env TLITE_EXP_SMALL_MAX=0 "${@:2}";; esac; }
for r in 1 2; do for x in base t128x64 t64x128 big; do for m in b1 b8; do
  echo -n "round $r $x $m "; v $x $T bench /tmp/$m.m -p 512 -n 8 -r 3 2>&1 | grep -E "^pp512"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 40); do cat /tmp/txt; done > /tmp/txt3
for x in base t128x64 t64x128 big; do echo "=== parity b1 $x --prompt-tokens 130 --max-batch 130"
  v $x timeout 200 $T parity /tmp/b1.m --data /tmp/txt3 --prompt-tokens 130 --max-batch 130 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
for x in base t128x64; do echo "=== profile b8 $x"; v $x $T bench /tmp/b8.m -p 512 -n 8 -r 1 --profile 2>&1 | grep -A10 "profile prefill"; done
