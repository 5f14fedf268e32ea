#!/usr/bin/env bash
# One call on the final tree (c3c6d26: one-pass decode attention, decode / decode_wide; the f16
# KV cache by default in run and bench): the side-by-side with llama.cpp
# (shared/peer/side-by-side.sh 1b, then 8b), tlite's 9-token prefill on both bodies, then the
# decode-path parity of a 4-layer body of the 1.17B's width over 150 forced positions (the
# narrow entry to 128 keys, the wide one past it), with the f32 and the f16 cache.
# Carry [".peer/carry", ".gl"].
bash .peer/carry/side-by-side.sh 1b 2>&1 | tee /tmp/sbs-1b.txt
bash .peer/carry/side-by-side.sh 8b 2>&1 | tee /tmp/sbs-8b.txt
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp; T=.peer/carry/tlite
for m in $(ls -d /tmp/*.m0e4 2>/dev/null); do for r in 1 2; do echo -n "$m "; $T bench $m -p 9 -n 4 -r 5 2>&1 | grep -E "^pp9"; done; done
$T synth llama-1b -o /tmp/p4 --layers 4 --vocab 49152 > /dev/null && $T convert /tmp/p4 -o /tmp/p4.m -g 64 --quantizer minmax 2>&1 | tail -n1
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 40); do cat /tmp/txt; done > /tmp/txt3
for kv in f32 f16; do echo "=== parity p4 TLITE_KV_CACHE=$kv --prompt-tokens 8 --forced 150 --max-batch 1"
  TLITE_KV_CACHE=$kv timeout 60 $T parity /tmp/p4.m --data /tmp/txt3 --prompt-tokens 8 --forced 150 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
