#!/usr/bin/env bash
# One call: the plan's norm-fused GEMVs after run5 (new: q, k and v in gemv_m0e4's structure at
# every width, the MLP's below 2048 columns too) against the tree before (fin); tg128
# alternated over two rounds on the 1.17B, Qwen2.5-1.5B and 8-layer Llama-3-8B bodies;
# decode-path parity of new. Carry [".gl", "target/car"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in fin new; do gunzip -c target/car/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/new
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth qwen2.5-1.5b -o /tmp/q1 && $T convert /tmp/q1 -o /tmp/q1.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c4.log 2>&1 &
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log; tail -n1 /tmp/c4.log
for r in 1 2; do for b in fin new; do for m in b1 q1 b8; do
  echo "--- round $r $b $m $(/tmp/bin/$b bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E 'tg128')"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for m in b1 q1; do echo "=== parity $m new (decode path)"
  timeout 200 $T parity /tmp/$m.m --data /tmp/txt --prompt-tokens 8 --forced 24 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
