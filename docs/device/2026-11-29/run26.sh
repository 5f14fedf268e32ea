#!/usr/bin/env bash
# The gated activation in the up projection's epilogue (branch next/glu-store, `gstore`): the up
# projection stores act(gate) · up into the gate's output; the separate glu op (prefill; decode
# only without the GLU GEMV) is gone. Against main (`base`, f6d45ee + docs), two rounds: pp512 on
# the 1.17B, 7.38B and Qwen2.5-1.5B bodies, pp2048 on the 1.17B, tg128 on the 1.17B (control:
# decode runs the GLU GEMV either way). Then the ops test with cooperative matrices required
# (the gated store through the coop kernels' epilogues) and parity of a 130-token prefill step.
# Prediction (8L profile of 11-28: glu 87 µs of ~2,700 per layer at pp512): pp512 +2-4%.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base gstore opsg; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/gstore
echo "=== ops (gstore)"; TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/opsg 2>&1 | grep -E "gated|covered|panicked|test result" | head -20
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth qwen2.5-1.5b -o /tmp/q15 --vocab 49152 > /dev/null && $T convert /tmp/q15 -o /tmp/q15.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^(pp|tg)[0-9]+ |rror" | tr '\n' ' '; echo; }
for r in 1 2; do for v in base gstore; do
  for m in b1 b32 q15; do one $v $m -p 512 -n 4; done
  one $v b1 -p 2048 -n 4; one $v b1 -p 16 -n 128; done; done
for v in base gstore; do echo "=== profile $v b32 pp512"; /tmp/bin/$v bench /tmp/b32.m -p 512 -n 4 -r 1 --profile 2>&1 | sed -n '/profile prefill/,$p' | head -12; done
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
for v in base gstore; do echo "=== parity $v b1 --prompt-tokens 130 --max-batch 130 --forced 8"
  timeout 120 /tmp/bin/$v parity /tmp/b1.m --data /tmp/txt --prompt-tokens 130 --max-batch 130 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
