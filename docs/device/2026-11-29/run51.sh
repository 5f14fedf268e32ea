#!/usr/bin/env bash
# Seventh session. Is the 128 x 128 coop GEMM short of warps (registers)? Variants of one binary
# (branch exp/coop-regs, TLITE_EXP_COOP): 0 = main's kernel (prefetch of 4 words + 4 scales + 4
# biases + 4 activation units per thread, ~28 registers held across the multiply-adds); 1 = the
# prefetched weights as 4 words and one raw group word (group a multiple of 32; ~7 registers
# fewer); 2 = 1 with the activations loaded at stash time (~23 fewer); 3 = nothing prefetched.
# If the kernel runs 1 workgroup (8 warps) per SM because it needs a little over 128 registers,
# 1-3 could let 2 run. Prediction: 1 and 2 +0-30% at pp512 on the 7.38B body, 3 below 2.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in exp opsexp; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
for v in 1 2 3; do echo "=== ops TLITE_EXP_COOP=$v, cooperative matrices required"
TLITE_EXP_COOP=$v TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/opsexp 2>&1 | grep -E "FAIL|fail|covered|panicked|test result" | head -8; done
T=/tmp/bin/exp
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & mk p4 llama-8b --layers 4 & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
for v in 1 2 3; do echo "=== parity v$v p4 600"; TLITE_EXP_COOP=$v timeout 120 $T parity /tmp/p4.m --data /tmp/txt --prompt-tokens 600 --max-batch 600 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
one() { echo -n "round $r v$1 $2 "; TLITE_EXP_COOP=$1 $T bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in 0 1 2 3; do one $v b32 -p 512 -n 4; one $v b32 -p 2048 -n 4; one $v b1 -p 512 -n 4; done; done
for v in 0 1 2; do echo "=== profile v$v b32 pp512"; TLITE_EXP_COOP=$v $T bench /tmp/b32.m -p 512 -n 4 -r 2 --profile 2>&1 | grep -E "profile prefill|gemm"; done
