#!/usr/bin/env bash
# Seventh session: the ops test of main (the F16_UNITS mend, coop required), then the prepared A/B of branch next/coop-64x64 (run49.sh). The 128 x 128
# coop GEMM with 4 subgroups of 64 rows x 64 tokens (16 accumulator tiles each) instead of 8 of
# 32 x 64: per 16-column step a subgroup loads 4 A and 4 B tiles from shared memory for 16
# multiply-adds instead of 2 A and 4 B for 8, so the tiles' shared-memory reads per step fall
# from 96 KiB to 64 KiB per workgroup (the writes stay 32 KiB); each thread loads and decodes a
# whole row's 8 words and 8 activation units per step. Risk: ~200 registers per thread (spills)
# and half the warps per workgroup. The 128 x 64 kernel keeps 8 subgroups (unchanged).
# Prediction: the 128 x 128 GEMMs 5-20% faster, 7.38B pp512 +5-15%; pp128 unchanged (128 x 64).
# Build: base = main, c64 = the branch, opsc64 = the branch's ops test binary (strip, gzip into
# target/car3/). Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base c64 opsc64 opsmain; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
echo "=== ops (opsmain), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/opsmain 2>&1 | grep -E "coop|covered|panicked|test result" | head -40
echo "=== ops (opsc64), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/opsc64 2>&1 | grep -E "matmul_coop|covered|panicked|test result" | head -40
T=/tmp/bin/base
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & mk p4 llama-8b --layers 4 & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
par() { echo "=== parity $1 $2 --prompt-tokens $3"; timeout 120 /tmp/bin/$1 parity /tmp/$2.m --data /tmp/txt --prompt-tokens $3 --max-batch $3 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; }
for m in p4 b1; do for n in 300 600; do par c64 $m $n; done; done
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base c64; do for p in 256 512 2048; do one $v b32 -p $p -n 4; one $v b1 -p $p -n 4; done; done; done
for v in base c64; do echo "=== profile $v b32 pp512"; /tmp/bin/$v bench /tmp/b32.m -p 512 -n 4 -r 2 --profile 2>&1 | grep -E "profile prefill|gemm"; done

echo "=== profile base b32 tg128"; /tmp/bin/base bench /tmp/b32.m -p 16 -n 128 -r 2 --profile 2>&1 | sed -n '/profile decode/,$p' | head -40
