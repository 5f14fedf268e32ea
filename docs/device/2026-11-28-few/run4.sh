#!/usr/bin/env bash
# One call: gemm_m0e4_coop_few with its weights loaded FD steps ahead (exp4; TLITE_EXP_FEW_FD
# = 1, 2, 4 and TLITE_EXP_FEW_WG = 128, 256 rebuild the kernel) against run3's kernel (exp3, one
# step ahead): 9-token prefill profiles and pp9 / pp32 on the 8-layer Llama-3-8B body, pp9 /
# pp32 on the 1.17B body; the ops test (coop required). Carry [".gl", "target/car2"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in exp3 exp4 ops; do gunzip -c target/car2/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/exp4
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
echo "=== ops (coop required)"
TLITE_REQUIRE_COOPMAT=1 /tmp/bin/ops every_entry_point_matches_the_cpu --nocapture 2>&1 | grep -E "coop_few|failed|panicked|SKIPPED|test result" | head -12
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log
v() { echo "--- round $r $*"; env "$@" bench /tmp/b8.m -p 9 -n 4 -r 3 --profile 2>&1 | grep -E "^  (up|down|qkv|o_proj|lm_head) gemm_few|^pp9" | head -6
  env "$@" bench /tmp/b8.m -p 32 -n 4 -r 3 2>&1 | grep -E "^pp"
  for p in 9 32; do echo -n "b1 "; env "$@" bench /tmp/b1.m -p $p -n 4 -r 3 2>&1 | grep -E "^pp"; done; }
for r in 1 2; do
  v /tmp/bin/exp3
  v TLITE_EXP_FEW_FD=1 /tmp/bin/exp4
  v TLITE_EXP_FEW_FD=2 /tmp/bin/exp4
  v TLITE_EXP_FEW_FD=4 /tmp/bin/exp4
  v TLITE_EXP_FEW_FD=4 TLITE_EXP_FEW_WG=128 /tmp/bin/exp4
done
