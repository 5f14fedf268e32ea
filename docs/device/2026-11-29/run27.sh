#!/usr/bin/env bash
# run26: the gated store removed the glu op (2.80 ms per 7.38B pp512 step) but made the up GEMM
# 3.7 ms slower: the coop epilogue read each output's prior value (the gate's output) between
# stores, 8 dependent round trips per lane and tile. gstore2 loads a lane's 8 prior values
# before storing any (also for the residual adds of o and down). Against main (base), two
# rounds, pp512 (1.17B, 7.38B, Qwen2.5-1.5B) and pp2048 (1.17B); the ops test first.
# Prediction: 7.38B pp512 +3% (the glu op's share), o and down a little faster.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base gstore2 opsg; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/gstore2
echo "=== ops (gstore2)"; TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/opsg 2>&1 | grep -E "gated bias|covered|panicked|test result" | head -12
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth qwen2.5-1.5b -o /tmp/q15 --vocab 49152 > /dev/null && $T convert /tmp/q15 -o /tmp/q15.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base gstore2; do
  for m in b1 b32 q15; do one $v $m -p 512 -n 1; done
  one $v b1 -p 2048 -n 1; done; done
echo "=== profile gstore2 b32 pp512"; $T bench /tmp/b32.m -p 512 -n 1 -r 1 --profile 2>&1 | sed -n '/profile prefill/,$p' | head -10
