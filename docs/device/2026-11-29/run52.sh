#!/usr/bin/env bash
# Seventh session. Branch next/coop-compact (cc) against main (base): the 128 x 128 coop GEMM
# holds its prefetched weights as 4 words and one raw group word (run51's variant 1, now on the
# 128 x 128 kernel only; the 128 x 64 kernel unchanged; groups of no multiple of 32 columns take
# the 128 x 64 tiles). Prediction: 7.38B pp512 +8-10% (run51: +9.7% with both kernels changed),
# 1.17B pp512 unchanged or better (run51's -6% there is the 128 x 64 kernel if this holds).
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base cc opscc; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
echo "=== ops (opscc), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/opscc 2>&1 | grep -E "g40|g24|covered|panicked|test result|[^,] FAIL" | grep -v "negated" | head -30
T=/tmp/bin/base
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & mk p4 llama-8b --layers 4 & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
par() { echo "=== parity $1 $2 --prompt-tokens $3"; timeout 120 /tmp/bin/$1 parity /tmp/$2.m --data /tmp/txt --prompt-tokens $3 --max-batch $3 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; }
for m in p4 b1; do for n in 300 600; do par cc $m $n; done; done
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base cc; do for p in 256 512 2048; do one $v b32 -p $p -n 4; one $v b1 -p $p -n 4; done; done; done
for v in base cc; do for m in b32 b1; do echo "=== profile $v $m pp512"; /tmp/bin/$v bench /tmp/$m.m -p 512 -n 4 -r 2 --profile 2>&1 | grep -E "profile prefill|gemm"; done; done
