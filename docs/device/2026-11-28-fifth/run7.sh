#!/usr/bin/env bash
# One call: the narrow GEMVs' row reduction as a subgroup butterfly (8 rows reduced in 9
# subgroupShuffleXor per thread, lanes assumed 32 = lid % 32, one barrier; TLITE_EXP_GV=bfly)
# and a knock-out without any reduction (wrong results by design, speed only; TLITE_EXP_GV=ko)
# against the tree's shared-memory reduction, one experimental binary (72d4fb0 + the
# replacement, run7-exp_gv.rs.txt), alternated over two rounds: tg128 on the 1.17B and 8L
# bodies; decode-path parity of bfly on the 1.17B body.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; gunzip -c target/car3/gv.gz > /tmp/bin/gv; chmod +x /tmp/bin/gv; T=/tmp/bin/gv
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
wait; for i in 2 3; do tail -n1 /tmp/c$i.log; done
for r in 1 2; do for v in base bfly ko; do for m in b1 b8; do
  echo -n "round $r $v $m "; TLITE_EXP_GV=$v $T bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E "^tg128"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 12); do cat /tmp/txt; done > /tmp/txt3
echo "=== parity b1 bfly --prompt-tokens 8 --max-batch 1"
TLITE_EXP_GV=bfly timeout 200 $T parity /tmp/b1.m --data /tmp/txt3 --prompt-tokens 8 --forced 64 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"
