#!/usr/bin/env bash
# A/B: base = main 222727b (next/attn-kv16 merged), few = branch next/f16-few (f16 input on the
# 16 x 16 and the 128 x 128 coop tiles, f32 on the 128 x 64 ones; run41 had f16 on every coop
# kernel: +9-14% at 32 tokens, -12% at 128). Prediction: pp9-pp40 +5-14% on both bodies, pp128
# and pp512 as base. Then the GEMV lab with weights that stay in the L2 (--rotate-mib 0) against
# the default rotation past it: how much faster the decode GEMVs run from the L2 (a bound on
# prefetching the next op's weights during latency-bound ops).
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base few opsfew; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
echo "=== ops (opsfew), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/opsfew 2>&1 | grep -E "_h::|coop_few|covered|panicked|test result" | head -40
T=/tmp/bin/base
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & mk p4 llama-8b --layers 4 & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
par() { echo "=== parity $1 $2 --prompt-tokens $3"; timeout 120 /tmp/bin/$1 parity /tmp/$2.m --data /tmp/txt --prompt-tokens $3 --max-batch $3 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; }
for m in p4 b1; do for n in 9 30 130 600; do par few $m $n; done; done
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base few; do for p in 9 32 40 128 512; do one $v b32 -p $p -n 4; done; for p in 9 32 128 512; do one $v b1 -p $p -n 4; done; done; done
for rot in 160 0; do echo "=== lab gemv --rotate-mib $rot"; $T lab gemv --rotate-mib $rot -r 7 2>&1 | tail -n 14; done
