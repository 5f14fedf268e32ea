#!/usr/bin/env bash
# Narrow decode GEMVs with two words per thread and iteration (branch next/gemv-pairs): the words
# wi and wi + 256 of all 8 rows are loaded before either is used (the second clamped into the
# row, its terms dropped past it), so at k = 4096 (two iterations) a thread waits for one round
# of loads instead of two. Prediction: +3-8% tg128 on the 7.38B body (its GEMVs are all narrow,
# k = 4096 except down), less on the 1.17B (q/k/v, o and down narrow; MLP wide at k = 2048).
# Then the 7.38B pp9 outlier: 20 repetitions in one process with the GPU's clocks sampled.
# Binaries: base = main (2a39cb2), pairs = next/gemv-pairs; carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,pstate --format=csv,noheader
mkdir -p /tmp/bin; for b in base pairs; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/base
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth qwen2.5-1.5b -o /tmp/q15 --vocab 49152 > /dev/null && $T convert /tmp/q15 -o /tmp/q15.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m -p 16 "${@:3}" -r 3 2>&1 | grep -E "^tg|rror"; }
for r in 1 2; do for v in base pairs; do
  for m in b1 b32 q15; do one $v $m -n 128; done
  one $v b32 -d 448 -n 64; done; done
for v in base pairs; do echo "=== profile $v b32"; /tmp/bin/$v bench /tmp/b32.m -p 16 -n 128 -r 1 --profile 2>&1 | sed -n '/profile decode/,/profile prefill/p' | head -12; done
echo "=== parity pairs b1 (decode path)"; /tmp/bin/pairs synth llama-1b -o /tmp/p4 --vocab 49152 --layers 4 > /dev/null && /tmp/bin/pairs convert /tmp/p4 -o /tmp/p4.m -g 64 --quantizer minmax > /dev/null 2>&1
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence. ')*40)" > /tmp/txt
/tmp/bin/pairs parity /tmp/p4.m --data /tmp/txt --prompt-tokens 8 --forced 150 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL"
echo "=== pp9 b32, 20 repetitions, clocks every 50 ms"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,pstate,power.draw,utilization.gpu --format=csv,noheader -lms 50 > /tmp/clk.txt & S=$!
$T bench /tmp/b32.m -p 9 -n 4 -r 20 --json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print([round(9/x*1000,1) for x in d.get('pp_tok_s_reps',[])] if isinstance(d,dict) else d)"
kill $S; sort -t, -k2 /tmp/clk.txt | awk -F, '{print $2,$3,$4}' | sort | uniq -c | sort -rn | head -8
nvidia-smi --query-compute-apps=pid,name,used_memory --format=csv
