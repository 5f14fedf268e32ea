#!/usr/bin/env bash
# For the next session (branch next/f16-all; not run: no device time left). run36: with 8 f16
# columns per 16-byte load the 128 x 128 coop GEMM gained 19.6% (7.38B pp512): the load
# instructions bound it. run30-run32 had found the 128 x 64 and 16 x 16 kernels slower with f16
# input, but those loaded 4 columns per 8-byte load. The branch gives every coop kernel f16 input
# with 16-byte loads (matmul_coop_small_h, matmul_coop_few_h) in every prefill step, the producers
# writing f16 in all steps of several tokens. Prediction: pp32-pp256 +3-10% on both bodies,
# 1.17B pp512 +5% (its 2048-row projections), 7.38B pp512 as main. Build: base = main (strip,
# gzip into target/car3/base.gz), f16all = the branch; ops16all = the branch's ops test binary.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base f16all ops16all; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/f16all
echo "=== ops (f16all), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/ops16all 2>&1 | grep -E "_h::|covered|panicked|test result" | head -40
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & mk p4 llama-8b --layers 4 & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
for m in p4 b1; do for n in 600 130 30; do echo "=== parity f16all $m --prompt-tokens $n --max-batch $n --forced 8"
  timeout 120 $T parity /tmp/$m.m --data /tmp/txt --prompt-tokens $n --max-batch $n --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done; done
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base f16all; do for p in 32 128 256 512; do one $v b32 -p $p -n 4; one $v b1 -p $p -n 4; done; one $v b1 -p 2048 -n 4; done; done
