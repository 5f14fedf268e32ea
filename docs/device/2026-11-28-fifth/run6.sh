#!/usr/bin/env bash
# One call: the final tree's ops test (cooperative matrices required) and eval generate tests on
# the H200; the prefill attention's keys per tile at 4 against the tree's 8 (an experimental
# binary, TLITE_EXP_PK), alternated over two rounds, pp512 on the 1.17B and 8L bodies; parity
# of a 130-token prefill on the 1.17B body (final tree's kernels).
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in pk ops gen; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/pk
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
echo "=== ops"; TLITE_REQUIRE_COOPMAT=1 /tmp/bin/ops 2>&1 | grep -E "attention::prefill|covered|failed|panicked|test result" | head -12
echo "=== eval generate"; /tmp/bin/gen --test-threads 2 2>&1 | grep -E "^test |test result|panicked" | head -12
wait; for i in 2 3; do tail -n1 /tmp/c$i.log; done
for r in 1 2; do for pk in 8 4; do for m in b1 b8; do
  echo -n "round $r PK=$pk $m "; TLITE_EXP_PK=$pk $T bench /tmp/$m.m -p 512 -n 8 -r 3 2>&1 | grep -E "^pp512"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 40); do cat /tmp/txt; done > /tmp/txt3
echo "=== parity b1 final --prompt-tokens 130 --max-batch 130"
timeout 200 $T parity /tmp/b1.m --data /tmp/txt3 --prompt-tokens 130 --max-batch 130 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"
