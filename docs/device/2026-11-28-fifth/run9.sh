#!/usr/bin/env bash
# One call: projections on the 128 x 128 coop tiles take the 128 x 64 tiles for steps below
# COOP_WIDE_PREFILL = 512 tokens (new: When::PrefillCoopMid / PrefillCoopWide) against e0927d4
# (base), alternated over two rounds: prefill steps of 64, 128, 256 and 512 tokens on the 1.17B
# and 8L bodies; parity of new on a 130-token prefill step (1.17B body: its gate and up
# projections, 8192 rows, take the new 128 x 64 twin).
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base new; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/new
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 > /dev/null && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
for r in 1 2; do for b in base new; do for m in b1 b8; do for p in 64 128 256 512; do
  echo -n "round $r $b $m "; /tmp/bin/$b bench /tmp/$m.m -p $p -n 4 -r 5 2>&1 | grep -E "^pp"; done; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 40); do cat /tmp/txt; done > /tmp/txt3
echo "=== parity b1 new --prompt-tokens 130 --max-batch 130"
timeout 100 $T parity /tmp/b1.m --data /tmp/txt3 --prompt-tokens 130 --max-batch 130 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"
