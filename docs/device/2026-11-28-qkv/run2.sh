#!/usr/bin/env bash
# One call: steps of 2-15 tokens on the decode GEMVs (norms and the gated activation fused; few)
# against 41ae315 (qkv: gemv_m0e4 per token after separate norm and GLU ops), alternated over two
# rounds: pp2, pp5, pp9, pp15 and tg128 on the 1.17B, 8-layer and full 7.38B bodies; the ops
# test on the H200 (cooperative matrices required); parity of `few` with 9-token prefill steps.
# Carry [".gl", "target/car"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in qkv few ops; do gunzip -c target/car/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/few
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
( $T synth llama-8b -o /tmp/f8 --vocab 49152 && $T convert /tmp/f8 -o /tmp/f8.m -g 64 --quantizer minmax ) > /tmp/c4.log 2>&1 &
echo "=== ops (coop required)"
TLITE_REQUIRE_COOPMAT=1 /tmp/bin/ops every_entry_point_matches_the_cpu --nocapture 2>&1 | grep -E "seq=[23] .*glu|failed|panicked|SKIPPED|test result" | head -12
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log; tail -n1 /tmp/c4.log
for r in 1 2; do for b in qkv few; do for m in b1 b8 f8; do echo "--- round $r $b $m"
  for p in 2 5 9 15; do /tmp/bin/$b bench /tmp/$m.m -p $p -n 4 -r 5 2>&1 | grep -E "^pp"; done
  /tmp/bin/$b bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E "tg128"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, deserves the praise and thanks of the City of Atlanta.\n' > /tmp/txt
cat /tmp/txt /tmp/txt /tmp/txt > /tmp/txt3
for m in b1 b8; do echo "=== parity $m few --prompt-tokens 40 --max-batch 9"
  timeout 200 $T parity /tmp/$m.m --data /tmp/txt3 --prompt-tokens 40 --forced 24 --max-batch 9 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
echo "=== profile f8 few, 9-token prefill"; $T bench /tmp/f8.m -p 9 -n 4 -r 1 --profile 2>&1 | grep -A14 "profile prefill"
