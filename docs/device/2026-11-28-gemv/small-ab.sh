#!/usr/bin/env bash
# After side-by-side.sh SHAPE made /tmp/mSHAPE.m0e4: short prefills through gemv_m0e4_tokens (new:
# .peer/carry/tlite, each word decoded once per 4 tokens) against gemv_m0e4 over each token (old:
# target/car/exp.gz, 93bf313), alternated: tlite bench pp at a few prompt lengths, and tlite run's
# prefill time of the 9-token prompt. Carry [".gl", ".peer/carry", "target/car"].
shape=${1:?1b or 8b}; M=/tmp/m$shape.m0e4; export XDG_RUNTIME_DIR=/tmp
[ -x /tmp/bin/old ] || { mkdir -p /tmp/bin; gunzip -c target/car/exp.gz > /tmp/bin/old; chmod +x /tmp/bin/old; }
cp .peer/carry/tlite /tmp/bin/new
for p in ${PROMPTS:-2 9 32 48}; do for b in old new old new; do
  echo "$shape $b p=$p $(/tmp/bin/$b bench $M -p $p -n 8 -r 3 2>/dev/null | grep -E '^pp')"; done; done
for b in old new old new; do
  /tmp/bin/$b run $M -p "The Fulton County Grand Jury said" -n 4 --max-seq 1024 --json 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin); s=d['stats']; print('$shape $b run: prompt', s['prompt_tokens'], 'prefill ms %.2f' % (1e3*s['prefill_seconds']))"
done
