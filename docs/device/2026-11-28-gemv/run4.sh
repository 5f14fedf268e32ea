#!/usr/bin/env bash
# One call: the ops test on the H200 (cooperative matrices required); the final tree's decode
# GEMVs (fin: gemv_m0e4 for plain projections, norm-fused and GLU GEMVs in its structure from
# 4096 input columns) against db1ab6b (dc: wide GEMVs), alternated over two rounds on the 1.17B,
# 8-layer and full 7.38B bodies; decode-path parity (--max-batch 1) of fin on the 1.17B and
# 8-layer bodies. Carry [".gl", "target/car"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in dc fin ops; do gunzip -c target/car/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/fin
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
( $T synth llama-8b -o /tmp/f8 --vocab 49152 && $T convert /tmp/f8 -o /tmp/f8.m -g 64 --quantizer minmax ) > /tmp/c4.log 2>&1 &
echo "=== ops (coop required)"
TLITE_REQUIRE_COOPMAT=1 /tmp/bin/ops every_entry_point_matches_the_cpu --nocapture 2>&1 | grep -E "glu_narrow|fused-norm|covered|failed|panicked|SKIPPED|test result" | head -20
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log; tail -n1 /tmp/c4.log
for r in 1 2; do for b in dc fin; do for m in b1 b8 f8; do echo "--- round $r $b $m"
  /tmp/bin/$b bench /tmp/$m.m -p 512 -n 128 -r 3 2>&1 | grep -E "pp512|tg128"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, deserves the praise and thanks of the City of Atlanta.\n' > /tmp/txt
for m in b1 b8; do echo "=== parity $m fin (decode path: --max-batch 1)"
  timeout 200 $T parity /tmp/$m.m --data /tmp/txt --prompt-tokens 8 --forced 24 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|max .Δ|PASS|FAIL|rror"; done
echo "=== profile f8 fin"; $T bench /tmp/f8.m -p 16 -n 128 -r 1 --profile 2>&1 | grep -A14 "profile decode"
