#!/usr/bin/env bash
# After side-by-side.sh SHAPE (its converted body at /tmp/mSHAPE.m0e4): decode with steps in
# flight (--lead) against one synchronized step at a time (--lead 0), alternated, same process
# environment; then tlite run's wall-clock decode at each.
shape=$1; C=$(cd "$(dirname "$0")" && pwd); T=$C/tlite; M=/tmp/m$shape.m0e4
export XDG_RUNTIME_DIR=/tmp
for lead in ${LEADS:-0 4 8 0 4 8}; do
  echo "--- bench --lead $lead"; "$T" bench "$M" -p 512 -n 128 -r ${REPS:-5} --lead $lead 2>&1 | tail -2
done
for lead in ${RUN_LEADS:-0 4}; do
  echo "--- run --lead $lead (greedy, 256 tokens)"
  "$T" run "$M" -p "The Fulton County Grand Jury said" -n 256 --max-seq 1024 --lead $lead --json 2>/dev/null \
    | python3 -c "import json,sys; s=json.load(sys.stdin)['stats']; print({k: s[k] for k in ('prefill_tok_s','decode_tok_s','decode_steps','generated','gpu_decode','stop_reason') if k in s})"
done
