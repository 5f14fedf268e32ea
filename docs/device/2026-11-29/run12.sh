#!/usr/bin/env bash
# One call: RoPE and the KV write in the q/k/v GEMV's epilogue, its row indices hoisted and its
# bias and RoPE table entries loaded before the loop (rope2, next/attn-rope 3rd commit), and
# rope2 plus the decode attention's q·k and value loops with four loads in flight per step
# (attn2, 4th commit), against main bb1aaaf (base), alternated over two rounds: tg128 on the
# 1.17B, 8L and 7.38B bodies, tg512 on the 1.17B and 7.38B bodies; then attn2's decode-path
# parity (1.17B, Qwen2.5-1.5B with its q/k/v bias), a 130-token coop prefill's parity, its
# profile, and the ops test with cooperative matrices required. Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base rope2 attn2 ops; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/attn2
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 > /dev/null && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth qwen2.5-1.5b -o /tmp/q15 > /dev/null && $T convert /tmp/q15 -o /tmp/q15.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
for r in 1 2; do for b in base rope2 attn2; do for m in b1 b8 b32; do
  echo -n "round $r $b $m "; /tmp/bin/$b bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E "^tg|rror"; done
  for m in b1 b32; do echo -n "round $r $b $m "; /tmp/bin/$b bench /tmp/$m.m -p 16 -n 512 -r 2 2>&1 | grep -E "^tg|rror"; done; done; done
echo "=== profile attn2 b32"; $T bench /tmp/b32.m -p 16 -n 128 -r 1 --profile 2>&1 | sed -n '/profile decode/,/profile prefill/p' | head -14
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 40); do cat /tmp/txt; done > /tmp/txt3
for m in b1 q15; do echo "=== parity $m attn2 --prompt-tokens 8 --forced 24 --max-batch 1"
  timeout 100 $T parity /tmp/$m.m --data /tmp/txt3 --prompt-tokens 8 --forced 24 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
echo "=== parity b1 attn2 --prompt-tokens 130 --max-batch 130"
timeout 100 $T parity /tmp/b1.m --data /tmp/txt3 --prompt-tokens 130 --max-batch 130 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"
echo "=== ops"; TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/ops 2>&1 | grep -E "covered|failed|panicked|test result" | head -12
