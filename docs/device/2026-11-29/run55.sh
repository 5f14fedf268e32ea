#!/usr/bin/env bash
# Seventh session. run51/run53's winning coop GEMM text (A: exp/coop-regs with TLITE_EXP_COOP=4,
# +10% at 7.38B pp512) against the same idea written other ways, all lost or untested: B =
# next/coop-split (run54: -11%), C1 = A with the dead variants removed and the weight and
# activation prefetches in one branch on UNIFORM_GROUPS, C4 = A with only the dead variants
# removed; base = main's file. One binary (exp/coop-regs) reading the file named by
# TLITE_EXP_FILE (target/car3/k/*.wgsl). Prediction: C4 as A; C1 unknown (the compiler's
# register allocation, not the arithmetic, separates these). Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp TLITE_EXP_COOP=4
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in exp opsexp; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
K=$PWD/target/car3/k
for v in C1 C4; do echo "=== ops $v, cooperative matrices required"
TLITE_EXP_FILE=$K/$v.wgsl TLITE_REQUIRE_COOPMAT=1 timeout 60 /tmp/bin/opsexp 2>&1 | grep -E "covered|panicked|[^,] FAIL" | grep -v negated | head -5; done
T=/tmp/bin/exp
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & wait
one() { echo -n "round $r $1 $2 "; TLITE_EXP_FILE=$K/$1.wgsl timeout 60 $T bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base A B C1 C4; do one $v b32 -p 512 -n 4; done; done
r=1; for v in base A C1 C4; do one $v b1 -p 512 -n 4; done
