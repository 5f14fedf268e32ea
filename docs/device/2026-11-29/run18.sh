#!/usr/bin/env bash
# run17 scanned nothing: `bench -p P` prefills P tokens but its tg decoded from an empty cache.
# `bench -d D` (main, this session) decodes from a cache of D tokens. Depth scan of the one-pass
# decode attention: tg64 @ d0/128/256/448 (1.17B) and d128/256/448 (7.38B), base (main: partial +
# combine), new (branch: one 256-thread workgroup per head, slices added pairwise), w512 / w1024
# (512 / 1024 threads; w1024 up to 1024 keys), new16 (new with TLITE_KV_CACHE=f16). Two rounds,
# alternated. Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base new w512 w1024; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/new
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
one() { # variant model depth
  local b=$1 kv=f32; case $1 in *16) b=${1%16}; kv=f16;; esac
  echo -n "round $r $1 $2 "; TLITE_KV_CACHE=$kv /tmp/bin/$b bench /tmp/$2.m -p 64 -d $3 -n 64 -r 3 2>&1 | grep -E "^tg|rror"; }
for r in 1 2; do for v in base new w512 w1024 new16; do
  for d in 0 128 256 448; do one $v b1 $d; done
  for d in 128 256 448; do one $v b32 $d; done; done; done
