#!/usr/bin/env bash
# The A/B calls of docs/PERF.md "Prefill on cooperative matrices" (one per step): the ops test with
# cooperative matrices required, then pp512 of the binary before (target/dcv2/tlite) and after
# (target/dc/tlite), alternated over two rounds, and the prefill profile of the new one.
# Carry [".gl", "target/dc", "target/dcv2"]; target/dc holds the stripped tlite and ops test binary
# (cargo test --release -p tlite-runtime-gpu --test ops --no-run).
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp; D=target/dc; T=$D/tlite
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "=== ops (coop required)"
TLITE_REQUIRE_COOPMAT=1 $D/ops every_entry_point_matches_the_cpu --nocapture 2>&1 | grep -E "coop|prefill|covered|failed|panicked|SKIPPED" | head -30
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log
for r in 1 2; do for b in target/dcv2/tlite $T; do for m in b1 b8; do echo "--- round $r $b $m"; $b bench /tmp/$m.m -p 512 -n 8 -r 3 2>&1 | grep -E "pp512"; done; done; done
$T bench /tmp/b8.m -p 512 -n 4 -r 1 --profile 2>&1 | grep -A12 "profile prefill"
