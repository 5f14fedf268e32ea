#!/usr/bin/env bash
# run30: with x in f16 the coop GEMM on 128 x 64 tiles lost 4-15% per op at pp128 and coop_few
# 4-5% at pp32, where the 128 x 128 tiles gained at pp512. That build had one kernel per tile
# with a runtime flag (`half`) and both input arrays in its loads; a driver that does not
# specialize the shared body keeps both. f16k builds the f16-input kernels as their own modules
# (matmul_coop_h, matmul_coop_small_h, matmul_coop_few_h: the input type in the prelude, no flag).
# Prediction: f16k >= f16in everywhere; pp128/pp32 at or above base if the flag was the cause.
# Base = main f97a0e5; f16in = run29's build. Then ops (f16k tree, cooperative matrices
# required), parity of 130- and 30-token coop steps, and f16k's pp128 profile.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base f16in f16k opsk; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/f16k
echo "=== ops (f16k tree), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 150 /tmp/bin/opsk 2>&1 | grep -E "coop.*_h|prefill_h|covered|panicked|test result|FAIL" | head -30
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & mk p4 llama-8b --layers 4 & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
for m in p4 b1; do for n in 130 30; do echo "=== parity f16k $m --prompt-tokens $n --max-batch $n --forced 8"
  timeout 120 $T parity /tmp/$m.m --data /tmp/txt --prompt-tokens $n --max-batch $n --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done; done
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base f16in f16k; do
  one $v b32 -p 512 -n 4; one $v b1 -p 512 -n 4; one $v b32 -p 128 -n 4; one $v b32 -p 32 -n 4; one $v b1 -p 128 -n 4; done; done
echo "=== profile f16k b32 pp128"; $T bench /tmp/b32.m -p 128 -n 4 -r 2 --profile 2>&1 | sed -n '/profile prefill/,/^NVIDIA/p'
