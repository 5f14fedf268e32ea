#!/usr/bin/env bash
# Eighth session: `tlite run` against the bench over the same positions on main (b651174; its tlite
# in .peer/carry). run61's side-by-side compares `run -n 512` (positions 7-518) with tg128
# (positions 16-143); bench -p 16 -d 7 -n 512 covers run's positions. Then main's per-op
# profiles of the 7.38B body (tg128, pp512). Carry [".peer/carry", ".gl"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp; T=.peer/carry/tlite
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
for r in 1 2; do for m in b1 b32; do
  echo -n "round $r bench d7 n512 $m "; $T bench /tmp/$m.m -p 16 -d 7 -n 512 -r 2 2>&1 | grep -E "^tg|rror"
  echo -n "round $r run n512 $m "; $T run /tmp/$m.m -p "The Fulton County Grand Jury said" -n 512 --max-seq 1024 --json 2>/dev/null \
    | python3 -c "import json,sys; s=json.load(sys.stdin)['stats']; print({k: s[k] for k in ('prompt_tokens','decode_tok_s','generated') if k in s})"
  echo -n "round $r bench tg128 $m "; $T bench /tmp/$m.m -p 16 -n 128 -r 2 2>&1 | grep -E "^tg|rror"
done; done
echo "=== profile b32 tg128"; $T bench /tmp/b32.m -p 16 -n 128 -r 2 --profile 2>&1 | sed -n '/profile decode/,/embed/p'
echo "=== profile b32 pp512"; $T bench /tmp/b32.m -p 512 -n 4 -r 2 --profile 2>&1 | sed -n '/profile prefill/,/embed/p'
