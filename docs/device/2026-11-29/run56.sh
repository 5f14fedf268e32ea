#!/usr/bin/env bash
# Prepared for the next session (not run: this session's device time was spent). Branch
# next/no-zero-wg (nz: the runtime's pipelines without wgpu's zeroing of workgroup memory at the
# start of every workgroup, where naga's checks are off; a read-only audit found every kernel
# writes each workgroup element before reading it) against main (base). The decode GEMVs zero
# 9-20 KiB per workgroup (red/red2/red3; xs/wred/wred16 in the GLU GEMV) with stores and a
# barrier before their first weight load. Prediction: decode +1-4% (7.38B, 1.17B), prefill
# unchanged. Build: base = main, nz = the branch, opsnz = the branch's ops test binary (strip,
# gzip into target/car3/). Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base nz opsnz; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
echo "=== ops (opsnz), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 60 /tmp/bin/opsnz 2>&1 | grep -E "covered|panicked|[^,] FAIL" | grep -v negated | head -8
T=/tmp/bin/base
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
echo "=== parity nz b1"; timeout 120 /tmp/bin/nz parity /tmp/b1.m --data /tmp/txt --prompt-tokens 300 --max-batch 300 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^(pp|tg)|rror"; }
for r in 1 2; do for v in base nz; do one $v b32 -p 16 -n 128; one $v b1 -p 16 -n 128; one $v b32 -p 512 -n 4; done; done
for v in base nz; do echo "=== profile $v b32 tg128"; /tmp/bin/$v bench /tmp/b32.m -p 16 -n 128 -r 2 --profile 2>&1 | sed -n '/profile decode/,/embed/p'; done
