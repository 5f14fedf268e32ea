#!/usr/bin/env bash
# One call: decode attention of branch next/attention-decode (att, 945e11d) against main (base,
# 8c6f0ef), each with the f32 and the f16 KV cache, alternated over two rounds: tg128 on the
# 1.17B, 8L, 7.38B and Qwen2.5-1.5B bodies; the ops test of att with cooperative matrices
# required; parity of att (f32 and f16 cache) on the 1.17B body; eval's generate tests of main on
# a GPU with cooperative matrices (the coop branch of the short-prefill test, the f16 cache test).
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base att ops gen; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/att
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
( $T synth llama-8b -o /tmp/f8 --vocab 49152 && $T convert /tmp/f8 -o /tmp/f8.m -g 64 --quantizer minmax ) > /tmp/c4.log 2>&1 &
( $T synth qwen2.5-1.5b -o /tmp/q1 --vocab 49152 && $T convert /tmp/q1 -o /tmp/q1.m -g 64 --quantizer minmax ) > /tmp/c5.log 2>&1 &
echo "=== ops (att)"; TLITE_REQUIRE_COOPMAT=1 /tmp/bin/ops every_entry_point_matches_the_cpu --nocapture 2>&1 | grep -E "attention|failed|panicked|test result" | head -16
echo "=== eval generate (base)"; /tmp/bin/gen --test-threads 2 2>&1 | grep -E "^test |test result|panicked" | head -20
wait; for i in 2 3 4 5; do tail -n1 /tmp/c$i.log; done
for r in 1 2; do for b in base att; do for kv in f32 f16; do for m in b1 b8 f8 q1; do
  if [ $kv = f16 ] && { [ $m = b8 ] || [ $m = q1 ]; }; then continue; fi
  echo -n "round $r $b kv=$kv $m "
  /tmp/bin/$b bench /tmp/$m.m -p 16 -n 128 -r 3 --kv-cache $kv 2>&1 | grep -E "^tg128"; done; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 12); do cat /tmp/txt; done > /tmp/txt3
for kv in f32 f16; do echo "=== parity b1 att kv=$kv --prompt-tokens 8 --max-batch 1"
timeout 200 env TLITE_KV_CACHE=$kv $T parity /tmp/b1.m --data /tmp/txt3 --prompt-tokens 8 --forced 64 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror|KV"; done
for b in base att; do echo "=== profile f8 $b"; /tmp/bin/$b bench /tmp/f8.m -p 16 -n 128 -r 1 --profile 2>&1 | grep -A14 "profile decode"; done
