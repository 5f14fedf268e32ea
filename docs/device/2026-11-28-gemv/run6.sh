#!/usr/bin/env bash
# One call: decode attention with one split of the keys writing the output itself (combine not
# dispatched), keys per split 32 / 64 / 128 (an uncommitted build, TLITE_EXP_KPS), against
# 6ae4380 (fin: 32 keys per split, combine always dispatched); tg128 from position 0 alternated
# over two rounds; then decode after a ~1,000-token prompt (tlite run --json, one round).
# Carry [".gl", "target/car"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in fin exp; do gunzip -c target/car/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/exp
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log
cfgs="fin exp:32 exp:64 exp:128"
for r in 1 2; do for cfg in $cfgs; do b=${cfg%%:*}; k=${cfg#*:}; for m in b1 b8; do
  echo "--- round $r $cfg $m"; TLITE_EXP_KPS=$k /tmp/bin/$b bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E "tg128"; done; done; done
P=$(for i in $(seq 70); do printf 'The jury further said in term-end presentments that the City Executive Committee deserves praise. '; done)
for cfg in $cfgs; do b=${cfg%%:*}; k=${cfg#*:}; for m in b1 b8; do
  echo "--- long prompt $cfg $m"; TLITE_EXP_KPS=$k /tmp/bin/$b run /tmp/$m.m -p "$P" -n 128 --max-batch 2048 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); s=d["stats"]; print(len(d["prompt_ids"]), "prompt tokens", s["decode_tok_s"], "decode tok/s", s["generated"], "generated")' 2>&1 | cut -c1-400; done; done
