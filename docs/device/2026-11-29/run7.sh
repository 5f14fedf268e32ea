#!/usr/bin/env bash
# One call: is `tlite run`'s decode (512 tokens, as side-by-side.sh runs it) 13% below the bench's
# tg128 on the 7.38B body (run6) because of the longer context or because of noise? The same
# binary (d43fe5c): bench tg128 and tg512, run -n 512 twice and -n 128 once, alternated.
# Carry [".peer/carry", ".gl"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
T=.peer/carry/tlite
$T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1
run() { $T run /tmp/b32.m -p "The Fulton County Grand Jury said" -n $1 --max-seq 1024 --json 2>/dev/null \
  | python3 -c "import json,sys; s=json.load(sys.stdin)['stats']; print({k: s[k] for k in ('decode_tok_s','generated') if k in s})"; }
for r in 1 2; do
  echo -n "round $r bench "; $T bench /tmp/b32.m -p 16 -n 128 -r 3 2>&1 | grep -E "^tg"
  echo -n "round $r run -n 512 "; run 512
  echo -n "round $r bench tg512 "; $T bench /tmp/b32.m -p 16 -n 512 -r 1 2>&1 | grep -E "^tg"
  echo -n "round $r run -n 128 "; run 128
done
