#!/usr/bin/env bash
# One call: the narrow GEMVs' row sums reduced with subgroupAdd (one barrier; sg, the default
# where the adapter has subgroups) against the shared-memory reduction (three barriers, five
# with a fused norm; TLITE_SUBGROUPS=off), same binary, alternated over two rounds: tg128 on
# the 1.17B, 8L, 7.38B and Qwen2.5-1.5B bodies; the GEMV lab in both; the ops tests (both
# flavors, cooperative matrices required); eval's generate tests (the coop branch, the f16
# cache test's coop tolerance); decode-path parity; a pp512 profile of the 7.38B body.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in sg ops gen; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/sg
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
( $T synth llama-8b -o /tmp/f8 --vocab 49152 && $T convert /tmp/f8 -o /tmp/f8.m -g 64 --quantizer minmax ) > /tmp/c4.log 2>&1 &
( $T synth qwen2.5-1.5b -o /tmp/q1 --vocab 49152 && $T convert /tmp/q1 -o /tmp/q1.m -g 64 --quantizer minmax ) > /tmp/c5.log 2>&1 &
echo "=== ops"; TLITE_REQUIRE_COOPMAT=1 /tmp/bin/ops 2>&1 | grep -E "covered|subgroup reductions|failed|panicked|test result" | head -16
echo "=== eval generate"; /tmp/bin/gen --test-threads 2 2>&1 | grep -E "^test |test result|panicked|KV " | head -20
wait; for i in 2 3 4 5; do tail -n1 /tmp/c$i.log; done
for sg in on off; do echo "=== lab gemv subgroups=$sg"; TLITE_SUBGROUPS=$sg $T lab gemv --allocations 2 2>&1 | tail -30; done
for r in 1 2; do for sg in off on; do for m in b1 b8 f8 q1; do
  echo -n "round $r subgroups=$sg $m "
  TLITE_SUBGROUPS=$sg $T bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E "^tg128"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 12); do cat /tmp/txt; done > /tmp/txt3
for m in b1 q1; do echo "=== parity $m subgroups on --prompt-tokens 8 --max-batch 1"
timeout 200 $T parity /tmp/$m.m --data /tmp/txt3 --prompt-tokens 8 --forced 64 --max-batch 1 2>&1 | grep -E "adapter|top-1|mean KLD|PASS|FAIL|rror"; done
for sg in off on; do echo "=== profile f8 subgroups=$sg"; TLITE_SUBGROUPS=$sg $T bench /tmp/f8.m -p 512 -n 32 -r 1 --profile 2>&1 | grep -A12 "profile "; done
