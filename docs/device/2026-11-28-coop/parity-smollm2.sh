#!/usr/bin/env bash
# SmolLM2 parity of the final binary, coop (f16 GEMM) and f32 paths; part 1 of the model came in the previous call.
source .gl/enter.sh >/dev/null; export XDG_RUNTIME_DIR=/tmp; T=target/dc/tlite
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/smol; cp target/sm2/*.json target/sm2/.tlite-output /tmp/smol/; cat /tmp/keep/part1 target/sm2/part2 > /tmp/smol/model.m0e4.safetensors
sha256sum /tmp/smol/model.m0e4.safetensors
for v in auto off; do echo "=== SmolLM2 parity TLITE_COOPMAT=$v"; TLITE_COOPMAT=$v timeout 120 $T parity /tmp/smol --data README.md --prompt-tokens 200 --forced 32 --max-batch 256 --layers 2>&1 | grep -vE "^layer +([0-9]|1[0-9]|2[0-6]) "; done
