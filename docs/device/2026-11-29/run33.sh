#!/usr/bin/env bash
# f16x: f16 inputs only for projections on the 128 x 128 tiles (run32: the 1.17B's down on the
# 128 x 64 tiles was 14% slower with f16 input), and glu/glu_h with 4 elements per thread (run32:
# the f32 glu, one element per thread of 64-thread workgroups, took 1,388 us per 1.17B pp512
# step against glu_h's 456). Prediction: 7.38B pp512 as run32's f16w (+10%); 1.17B pp512
# +8-10% (down back to f32, glu ~3x faster); decode unchanged. Then ops (final kernels,
# cooperative matrices required), parity of 600-token steps, and both 1.17B pp512 profiles.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base f16x opsx; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/f16x
echo "=== ops (f16x tree), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 150 /tmp/bin/opsx 2>&1 | grep -E "coop_h|prefill_h|glu|covered|panicked|test result|FAIL" | head -30
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & mk p4 llama-8b --layers 4 & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
for m in p4 b1; do echo "=== parity f16x $m --prompt-tokens 600 --max-batch 600 --forced 8"
  timeout 120 $T parity /tmp/$m.m --data /tmp/txt --prompt-tokens 600 --max-batch 600 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base f16x; do
  one $v b32 -p 512 -n 4; one $v b1 -p 512 -n 4; one $v b1 -p 2048 -n 4; one $v b32 -p 128 -n 4; one $v b1 -p 128 -n 4; done; done
for v in base f16x; do echo "=== profile $v b1 pp512"; /tmp/bin/$v bench /tmp/b1.m -p 512 -n 4 -r 2 --profile 2>&1 | sed -n '/profile prefill/,/^NVIDIA/p' | grep -v "^NVIDIA"; done
