#!/usr/bin/env bash
# One call: coalesced activation loads (16 threads per token row) and one scale and bias per 4
# words in the cooperative-matrix kernels (exp) against the tree before (base): pp512 of the
# coop GEMM, pp9 / pp32 (base: GEMVs, exp: gemm_m0e4_coop_few), alternated over two rounds on the
# 8-layer Llama-3-8B and 1.17B bodies; exp's 9-token prefill profile; the ops test (coop
# required). Carry [".gl", "target/car2"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base exp ops; do gunzip -c target/car2/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/exp
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
echo "=== ops (coop required)"
TLITE_REQUIRE_COOPMAT=1 /tmp/bin/ops every_entry_point_matches_the_cpu --nocapture 2>&1 | grep -E "coop|failed|panicked|SKIPPED|test result" | head -30
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log
for r in 1 2; do for b in base exp; do for m in b8 b1; do echo "--- round $r $b $m"
  /tmp/bin/$b bench /tmp/$m.m -p 512 -n 4 -r 3 2>&1 | grep -E "^pp"
  for p in 9 32; do /tmp/bin/$b bench /tmp/$m.m -p $p -n 4 -r 5 2>&1 | grep -E "^pp"; done; done; done; done
echo "=== profile b8 exp, 9-token prefill"; $T bench /tmp/b8.m -p 9 -n 4 -r 1 --profile 2>&1 | grep -A8 "profile prefill"
echo "=== profile b8 exp, 512-token prefill"; $T bench /tmp/b8.m -p 512 -n 4 -r 1 --profile 2>&1 | grep -A8 "profile prefill"
