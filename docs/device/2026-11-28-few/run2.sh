#!/usr/bin/env bash
# One call: where gemm_m0e4_coop_few's time goes. An experimental build (exp) whose kernel
# drops one part when TLITE_EXP_FEW_KO is set (results wrong by design): 1 the cooperative
# loads and multiply-adds, 2 the weight loads, 3 the activation loads, 4 the shared-memory
# stores, 5 the barriers, 6 the weight decode; TLITE_EXP_FEW_WG sets the threads per workgroup
# (the k split). 9-token prefill profiles on the 8-layer Llama-3-8B body. Carry [".gl", "target/car2"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; gunzip -c target/car2/exp.gz > /tmp/bin/exp; chmod +x /tmp/bin/exp
T=/tmp/bin/exp
$T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 > /tmp/c.log 2>&1 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax >> /tmp/c.log 2>&1; tail -n1 /tmp/c.log
for r in 1 2; do
for v in 0 1 2 3 4 5 6; do echo "--- round $r ko=$v"
  TLITE_EXP_FEW_KO=$v $T bench /tmp/b8.m -p 9 -n 4 -r 3 --profile 2>&1 | grep -E "^  (up|down|qkv|o_proj) gemm_few|^pp9" | head -5; done
for w in 64 128; do echo "--- round $r wg=$w"
  TLITE_EXP_FEW_WG=$w $T bench /tmp/b8.m -p 9 -n 4 -r 3 --profile 2>&1 | grep -E "^  (up|down|qkv|o_proj) gemm_few|^pp9" | head -5; done
done
