#!/usr/bin/env bash
# For the next session (branch next/attention-wide-split; not run yet). run18/run19: at 449-512
# keys `decode_wide` (1024 threads, one per key) gains only +0.8-1.4% over partial + combine,
# and a 1.17B step at d448 is ~11% slower than at d0. Its score loop is one thread per key, hd/4
# vector loads in sequence (32 for hd 128) while most of the 1024 threads idle. The branch gives
# each key ATTENTION_DECODE_WIDE_TPK threads (every TPK-th vector; partial sums added through
# shared memory, 2 barriers per pass of 1024 / TPK keys). Prediction: +2-4% at d448, +1-2% at
# d256, unchanged at d64 (narrow entry, control). Variants: base (main), tpk2, tpk4 (the
# branch), tpk8. Build: base from main; tpkN from the branch with ATTENTION_DECODE_WIDE_TPK = N
# (params.rs), each `cargo build --release -p tlite-cli`, strip, gzip into target/car3/<name>.gz.
# Carry [".gl", "target/car3"]. Two rounds alternated; then tpk4's ops test is
# `cargo test --release -p tlite-runtime-gpu --test ops` on lavapipe (no coop kernels needed).
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base tpk2 tpk4 tpk8; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/tpk4
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m -p 64 "${@:3}" -r 3 2>&1 | grep -E "^tg|rror"; }
for r in 1 2; do for v in base tpk2 tpk4 tpk8; do
  for d in 64 128 256 448; do one $v b1 -d $d -n 64; done
  for d in 256 448; do one $v b32 -d $d -n 64; done
  one $v b1 -n 512; done; done
# Also for the next session, on tpk4 (the branch): `run`'s decode against the bench over the
# same positions (the acceptance compares `run -n 512`, positions 7-518, with tg128, positions
# 0-127): bench -d 7 -n 512 beside run -n 512 --max-seq 1024, twice each; then the 7.38B body's
# 9-token prefill in 4 separate processes (run20's first process had a median of 28.6 ms, the
# second 12.5; run6 the same kind of outlier).
for r in 1 2; do for m in b1 b32; do
  echo -n "round $r bench d7 n512 $m "; $T bench /tmp/$m.m -p 16 -d 7 -n 512 -r 2 2>&1 | grep -E "^tg|rror"
  echo -n "round $r run n512 $m "; $T run /tmp/$m.m -p "The Fulton County Grand Jury said" -n 512 --max-seq 1024 --json 2>/dev/null \
    | python3 -c "import json,sys; s=json.load(sys.stdin)['stats']; print({k: s[k] for k in ('prompt_tokens','decode_tok_s','generated') if k in s})"
done; done
for i in 1 2 3 4; do echo -n "pp9 b32 process $i "; $T bench /tmp/b32.m -p 9 -n 4 -r 5 2>&1 | grep -E "^pp9|rror"; done
