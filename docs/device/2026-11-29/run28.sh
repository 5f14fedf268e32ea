#!/usr/bin/env bash
# For the next session (branch next/run-warmup; not run: no device time left). run25: `tlite run`
# on the 7.38B body decoded at 288.7 tok/s, 8.1% below the bench's tg128 (314.2), its 7-token
# prompt taking 38.7 ms (181 tok/s); in run20 the same run prefilled at 628 tok/s (11 ms) and
# decoded at 299.4 (4.7% below). run22: a GPU idle during the load runs its first ~0.1 s of work
# at low clocks. The branch repeats run's warm-up (two discarded decode steps) until
# --warmup-ms (default 200) have passed. Prediction: run's 7.38B decode within 2-4% of tg128
# (the rest is the context's length, run21), its prefill at ~600 tok/s, whatever the load.
# Build: base from main, warm from the branch (cargo build --release -p tlite-cli, strip, gzip
# into target/car3/). Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base warm; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/warm
$T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1
echo -n "bench "; $T bench /tmp/b32.m -p 16 -n 128 -r 3 2>&1 | grep -E "^tg|rror"
for r in 1 2 3; do for v in base warm; do echo -n "round $r $v run n512 "
  /tmp/bin/$v run /tmp/b32.m -p "The Fulton County Grand Jury said" -n 512 --max-seq 1024 --json 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin); s=d['stats']; print({k: s[k] for k in ('prefill_tok_s','decode_tok_s') if k in s}, 'warm-up', d.get('warmup_seconds'), d.get('warmup_rounds'))"
done; done
# Added at the run (2026-11-29, fifth session): main's 7.38B prefill profile, per op, for the next
# prefill change (the f16 GEMM inputs).
echo "=== profile base b32 pp512"; /tmp/bin/base bench /tmp/b32.m -p 512 -n 4 -r 2 --profile 2>&1 | sed -n '/profile prefill/,$p'
