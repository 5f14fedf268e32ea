#!/usr/bin/env bash
# Third session of 2026-11-29. run16 (one-pass decode attention, 256 threads, up to 512 keys):
# tg128 +4% on every body, tg512 -3..-4%: the one pass loses somewhere past 144 keys. This call
# scans depth: decode of 48 tokens from P = 100, 200, 330, 460 (1.17B) and 200, 460 (7.38B) for
# base (main 46a7d64: partial + combine), new (the branch; its slices added pairwise), w512 and
# w1024 (the same kernel with 512 and 1024 threads; w1024 up to 1024 keys), and base and new with
# the f16 KV cache (TLITE_KV_CACHE=f16). Two rounds, alternated. Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base new w512 w1024; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/new
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
one() { # variant model depth
  local b=$1 kv=f32; case $1 in *16) b=${1%16}; kv=f16;; esac
  echo -n "round $r $1 $2 p$3 "; TLITE_KV_CACHE=$kv /tmp/bin/$b bench /tmp/$2.m -p $3 -n 48 -r 3 2>&1 | grep -E "^tg|rror"; }
for r in 1 2; do for v in base new w512 w1024 base16 new16; do
  for p in 100 200 330 460; do one $v b1 $p; done
  for p in 200 460; do one $v b32 $p; done; done; done
