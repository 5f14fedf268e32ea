#!/usr/bin/env bash
# One call: q, k and v in one projection (new: the joined weight, rope_kv::from_qkv) against
# a403e2c (old: three projections), alternated over two rounds on the 1.17B, 8-layer and full
# 7.38B bodies (tlite bench -p 512 -n 128 -r 3, and pp9 for the 9-token prefill); the ops test
# on the H200 (cooperative matrices required); parity of new on the decode path (--max-batch 1)
# and on the prefill GEMM path. Carry [".gl", "target/car"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in old new ops; do gunzip -c target/car/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/new
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
( $T synth llama-8b -o /tmp/f8 --vocab 49152 && $T convert /tmp/f8 -o /tmp/f8.m -g 64 --quantizer minmax ) > /tmp/c4.log 2>&1 &
echo "=== ops (coop required)"
TLITE_REQUIRE_COOPMAT=1 /tmp/bin/ops every_entry_point_matches_the_cpu --nocapture 2>&1 | grep -E "from_qkv|failed|panicked|SKIPPED|test result" | head -12
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log; tail -n1 /tmp/c4.log
for r in 1 2; do for b in old new; do for m in b1 b8 f8; do echo "--- round $r $b $m"
  /tmp/bin/$b bench /tmp/$m.m -p 512 -n 128 -r 3 2>&1 | grep -E "dispatches|pp512|tg128"
  /tmp/bin/$b bench /tmp/$m.m -p 9 -n 4 -r 5 2>&1 | grep -E "pp9"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, deserves the praise and thanks of the City of Atlanta.\n' > /tmp/txt
cat /tmp/txt /tmp/txt /tmp/txt > /tmp/txt3
for m in b1 b8; do for pm in 8:1 60:64; do pt=${pm%%:*}; mb=${pm#*:}; echo "=== parity $m new --prompt-tokens $pt --max-batch $mb"
  timeout 200 $T parity /tmp/$m.m --data /tmp/txt3 --prompt-tokens $pt --forced 24 --max-batch $mb 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done; done
echo "=== profile f8 new"; $T bench /tmp/f8.m -p 16 -n 128 -r 1 --profile 2>&1 | grep -A14 "profile decode"
