#!/usr/bin/env bash
# One call: the coop GEMM reading its input in f16 (new: `to_f16` converts each coop GEMM's
# input once per projection; the kernel loads half the bytes and converts nothing) against
# d43fe5c (base), alternated over two rounds: prefill steps of 64, 128 and 512 tokens on the
# 1.17B, 8L and 7.38B bodies; then new's 130-token coop prefill parity and the ops test with
# cooperative matrices required.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base new ops; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/new
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 > /dev/null && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
for r in 1 2; do for b in base new; do for m in b1 b8 b32; do for p in 64 128 512; do
  echo -n "round $r $b $m "; /tmp/bin/$b bench /tmp/$m.m -p $p -n 4 -r 3 2>&1 | grep -E "^pp|rror"; done; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 40); do cat /tmp/txt; done > /tmp/txt3
echo "=== parity b1 new --prompt-tokens 130 --max-batch 130"
timeout 100 $T parity /tmp/b1.m --data /tmp/txt3 --prompt-tokens 130 --max-batch 130 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"
echo "=== parity b1 new --prompt-tokens 600 --max-batch 600"
timeout 200 $T parity /tmp/b1.m --data /tmp/txt3 --prompt-tokens 600 --max-batch 600 --forced 4 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"
echo "=== ops"; TLITE_REQUIRE_COOPMAT=1 timeout 200 /tmp/bin/ops 2>&1 | grep -E "coop|covered|failed|panicked|test result" | head -12  # (head 12 cut the summary lines in run5.txt)
