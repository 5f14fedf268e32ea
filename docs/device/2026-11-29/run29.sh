#!/usr/bin/env bash
# Branch next/f16-inputs: the projections on cooperative matrices read their input in f16,
# written so by the op before them (rmsnorm_h, glu_h, attention_coop::prefill_h), instead of
# loading f32 and converting per tile. run5 (a separate to_f16 op per projection) measured the
# GEMM with f16 input +5% at pp512 on the 8B shapes net of 128 extra dispatches; the knock-out
# without activation loads (cnox) +32%. Prediction: 7.38B pp512 +6-10% (6,470 -> ~7,000), 1.17B
# +2-6%, short steps (coop_few) +2-5%; the glu op half its write bytes. Base = main f97a0e5.
# Then the ops test with cooperative matrices required (the _h entry points), parity of
# 130-token coop prefill steps (4-layer 7.38B-width body, hd 128; 1.17B body) and of 30-token
# steps (coop_few), and the f16in profile of the 7.38B pp512.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base f16in opsh; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/f16in
echo "=== ops (f16in tree), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 150 /tmp/bin/opsh 2>&1 | grep -E "coop|_h |covered|panicked|test result|FAIL" | head -40
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/p4 --layers 4 --vocab 49152 > /dev/null && $T convert /tmp/p4 -o /tmp/p4.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
for m in p4 b1; do for n in 130 30; do echo "=== parity f16in $m --prompt-tokens $n --max-batch $n --forced 8"
  timeout 120 $T parity /tmp/$m.m --data /tmp/txt --prompt-tokens $n --max-batch $n --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done; done
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base f16in; do
  one $v b32 -p 512 -n 4; one $v b1 -p 512 -n 4; one $v b32 -p 128 -n 4; one $v b32 -p 32 -n 4; one $v b1 -p 2048 -n 4; done; done
echo "=== profile f16in b32 pp512"; $T bench /tmp/b32.m -p 512 -n 4 -r 2 --profile 2>&1 | sed -n '/profile prefill/,/^NVIDIA/p'
