#!/usr/bin/env bash
# One call: `tlite run` with the warm-up after the load (new default) against --no-warmup, -n 512
# as side-by-side.sh runs it, alternated over two rounds, on the 7.38B body; bench tg128 beside.
# Carry [".peer/carry", ".gl"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
T=.peer/carry/tlite
$T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1
run() { $T run /tmp/b32.m -p "The Fulton County Grand Jury said" -n 512 --max-seq 1024 --json $1 2>/dev/null \
  | python3 -c "import json,sys; d=json.load(sys.stdin); s=d['stats']; print({k: s[k] for k in ('prefill_tok_s','decode_tok_s','generated') if k in s}, 'warmup_seconds', d.get('warmup_seconds'))"; }
for r in 1 2; do
  echo -n "round $r run warm-up "; run ""
  echo -n "round $r run --no-warmup "; run --no-warmup
done
echo -n "bench "; $T bench /tmp/b32.m -p 16 -n 128 -r 3 2>&1 | grep -E "^tg"
