#!/usr/bin/env bash
# Prepared for the next session (not run: no device time left). `tlite lab stats` on the GPU:
# the driver's statistics (registers, shared/local memory, spills) of every kernel's pipeline on
# main, then of run55's five texts of the coop GEMM (base = main before the raw group word, A =
# the measured winner, B = next/coop-split, -12%, C1 = main now, C4), to see whether registers
# and occupancy separate them. Build: st = branch exp/stats-files (main + TLITE_EXP_FILE),
# labst = its lab test binary (strip, gzip into target/car3/); the texts in target/car3/k/ (from
# docs/device/2026-11-29/run55-k/). Carry [".gl", "target/car3"]; run with run56.sh in one call.
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
mkdir -p /tmp/bin; for b in st labst; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
echo "=== lab test, statistics required"
TLITE_REQUIRE_PIPELINE_STATS=1 timeout 120 /tmp/bin/labst pipeline_statistics 2>&1 | grep -E "lab stats|test result|panicked" | head -5
echo "=== tlite lab stats (main's kernels)"
timeout 120 /tmp/bin/st lab stats 2>&1 | head -80
K=$PWD/target/car3/k
for v in base A B C1 C4; do echo "=== coop GEMM text $v"; TLITE_EXP_FILE=$K/$v.wgsl timeout 60 /tmp/bin/st lab stats --only matmul_coop 2>&1 | grep -v "^adapter"; done
