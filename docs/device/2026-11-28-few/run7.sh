#!/usr/bin/env bash
# One call: gemm_m0e4_coop_few with two 16-row weight tiles per subgroup (fr2: 32 rows per
# workgroup, each activation tile used twice) against 3f5222d (base: one tile), alternated over
# two rounds: pp9 and pp32 on the 8-layer Llama-3-8B and 1.17B bodies; the ops test (coop
# required); parity of fr2 in steps of 9 tokens. Carry [".gl", "target/car2"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base fr2 ops; do gunzip -c target/car2/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/fr2
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
echo "=== ops (coop required)"
TLITE_REQUIRE_COOPMAT=1 /tmp/bin/ops every_entry_point_matches_the_cpu --nocapture 2>&1 | grep -E "coop_few|failed|panicked|SKIPPED|test result" | head -12
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log
for r in 1 2; do for b in base fr2; do for m in b8 b1; do for p in 9 32; do echo -n "round $r $b $m "
  /tmp/bin/$b bench /tmp/$m.m -p $p -n 2 -r 5 2>&1 | grep -E "^pp"; done; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, deserves the praise and thanks of the City of Atlanta.\n' > /tmp/txt
cat /tmp/txt /tmp/txt /tmp/txt > /tmp/txt3
echo "=== parity b1 fr2 --prompt-tokens 40 --max-batch 9"
timeout 100 $T parity /tmp/b1.m --data /tmp/txt3 --prompt-tokens 40 --forced 24 --max-batch 9 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"
