#!/usr/bin/env bash
# Seventh session. run52's next/coop-compact (one raw group word in a combined Fetch struct)
# lost 11.5% at 7.38B pp512 where run51's variant 1 (separate weight and activation prefetch
# variables, helper functions) gained 9.7%. Same binary (exp/coop-regs), TLITE_EXP_COOP: 0 =
# main's kernels, 1 = run51's variant 1 on both coop kernels (a repeat), 4 = variant 1 on the
# 128 x 128 kernel only. Prediction: 1 and 4 +9% at 7.38B pp512; 4 at least 1's figure on the
# 1.17B (whose 2048-row projections take the 128 x 64 kernel). Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in exp opsexp; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
echo "=== ops TLITE_EXP_COOP=4, cooperative matrices required"
TLITE_EXP_COOP=4 TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/opsexp 2>&1 | grep -E "covered|panicked|test result|[^,] FAIL" | grep -v negated | head -8
T=/tmp/bin/exp
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & wait
one() { echo -n "round $r v$1 $2 "; TLITE_EXP_COOP=$1 $T bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in 0 1 4; do one $v b32 -p 512 -n 4; one $v b32 -p 2048 -n 4; one $v b1 -p 512 -n 4; one $v b1 -p 2048 -n 4; done; done
for v in 0 4; do echo "=== profile v$v b1 pp512"; TLITE_EXP_COOP=$v $T bench /tmp/b1.m -p 512 -n 4 -r 2 --profile 2>&1 | grep -E "profile prefill|gemm"; done
