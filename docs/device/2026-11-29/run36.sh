#!/usr/bin/env bash
# next/x16-loads: the f16-input coop GEMM (128 x 128 tiles) loads 8 columns per thread and load
# (one 16-byte vec4<u32>, unpacked to f16) instead of 4 per 8-byte load: half the load
# instructions for the same bytes. Prediction: 7.38B pp512 +1-4% (the GEMMs' global loads
# dominate, run1's cnofetch), 1.17B less (only gate/up read f16). Base = main 6761659 (final).
# Then the ops test of the branch (cooperative matrices required).
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in final x16 ops16; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/x16
echo "=== ops (x16), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 60 /tmp/bin/ops16 2>&1 | grep -E "coop_h|covered|panicked|test result" | head -12
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & wait
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in final x16; do one $v b32 -p 512 -n 4; one $v b1 -p 512 -n 4; done; done
