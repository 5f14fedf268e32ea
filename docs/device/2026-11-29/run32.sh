#!/usr/bin/env bash
# f16w: the f16 inputs only in steps of COOP_WIDE_PREFILL (512) tokens or more, where run29 and
# run31 measured them faster (7.38B pp512 +10%, 1.17B +7%); shorter steps read f32 as on main
# (the 128 x 64 and few kernels were 4-15% slower with f16 input at 32-128 tokens). Prediction:
# pp512 as run31's f16k, pp32/pp128 as base (same kernels), tg128 unchanged. Then parity of
# 600-token steps (f16 inputs) and 130-token steps, and both binaries' 1.17B pp512 profiles
# (its 2048-row projections read f16 on the 128 x 64 tiles at 512 tokens).
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base f16w; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/f16w
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & mk p4 llama-8b --layers 4 & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
for m in p4 b1; do for n in 600 130; do echo "=== parity f16w $m --prompt-tokens $n --max-batch $n --forced 8"
  timeout 120 $T parity /tmp/$m.m --data /tmp/txt --prompt-tokens $n --max-batch $n --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done; done
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|^tg|rror"; }
for r in 1 2; do for v in base f16w; do
  one $v b32 -p 512 -n 4; one $v b1 -p 512 -n 4; one $v b32 -p 128 -n 4; one $v b32 -p 32 -n 4; one $v b1 -p 2048 -n 4; one $v b32 -p 16 -n 128; done; done
for v in base f16w; do echo "=== profile $v b1 pp512"; /tmp/bin/$v bench /tmp/b1.m -p 512 -n 4 -r 2 --profile 2>&1 | sed -n '/profile prefill/,/^NVIDIA/p' | grep -v "^NVIDIA"; done
