#!/usr/bin/env bash
# One call: the narrow decode GEMVs reading x as two vec4 per word (xv) against 8656763 (base:
# eight scalar loads), alternated over two rounds: tg128 on the 1.17B, 8-layer, 7.38B and
# Qwen2.5-1.5B bodies; parity of xv on the decode path. Carry [".gl", "target/car2"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base xv; do gunzip -c target/car2/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/xv
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
( $T synth llama-8b -o /tmp/f8 --vocab 49152 && $T convert /tmp/f8 -o /tmp/f8.m -g 64 --quantizer minmax ) > /tmp/c4.log 2>&1 &
( $T synth qwen2.5-1.5b -o /tmp/q1 --vocab 49152 && $T convert /tmp/q1 -o /tmp/q1.m -g 64 --quantizer minmax ) > /tmp/c5.log 2>&1 &
wait; for i in 2 3 4 5; do tail -n1 /tmp/c$i.log; done
for r in 1 2; do for b in base xv; do for m in b1 b8 f8 q1; do echo -n "round $r $b $m "
  /tmp/bin/$b bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E "^tg128"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, deserves the praise and thanks of the City of Atlanta.\n' > /tmp/txt
cat /tmp/txt /tmp/txt /tmp/txt > /tmp/txt3
for m in b1 q1; do echo "=== parity $m xv --prompt-tokens 8 --max-batch 1"
  timeout 200 $T parity /tmp/$m.m --data /tmp/txt3 --prompt-tokens 8 --forced 24 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
