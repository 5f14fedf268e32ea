#!/usr/bin/env bash
# For the next session (branch next/attention-onepass; not run yet): the one-pass decode
# attention (`attention::decode`, one 256-thread workgroup per head over at most
# ATTENTION_DECODE_KEYS = 512 keys; no combine dispatch) against main (base), alternated over two
# rounds: tg128 and tg512 on the 1.17B and 7.38B bodies, tg128 on the 8L body; then new's
# decode-path parity (1.17B, Qwen2.5-1.5B), its profile, and the ops test. Prediction from
# run14's knock-outs: +3-7% (the combine dispatch) where the one pass is no slower than
# `partial`; tg512 (positions 16-528) tells whether 257-512 keys in one workgroup still win (if
# not: ATTENTION_DECODE_KEYS = 256, one constant). Build: base from main, new from the branch (cargo build
# --release -p tlite-cli, strip, gzip into target/car3/{base,new}.gz), ops from the branch
# (cargo test --release -p tlite-runtime-gpu --test ops --no-run). Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base new ops; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/new
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 > /dev/null && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth qwen2.5-1.5b -o /tmp/q15 > /dev/null && $T convert /tmp/q15 -o /tmp/q15.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
for r in 1 2; do for b in base new; do
  for m in b1 b8 b32; do echo -n "round $r $b $m "; /tmp/bin/$b bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E "^tg|rror"; done
  for m in b1 b32; do echo -n "round $r $b $m "; /tmp/bin/$b bench /tmp/$m.m -p 16 -n 512 -r 2 2>&1 | grep -E "^tg|rror"; done; done; done
echo "=== profile new b32"; $T bench /tmp/b32.m -p 16 -n 128 -r 1 --profile 2>&1 | sed -n '/profile decode/,/profile prefill/p' | head -14
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 40); do cat /tmp/txt; done > /tmp/txt3
for m in b1 q15; do echo "=== parity $m new --prompt-tokens 8 --forced 24 --max-batch 1"
  timeout 100 $T parity /tmp/$m.m --data /tmp/txt3 --prompt-tokens 8 --forced 24 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
echo "=== ops"; TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/ops 2>&1 | grep -E "covered|failed|panicked|test result" | head -12
