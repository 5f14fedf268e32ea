#!/usr/bin/env bash
# One call: knock-outs (an experimental binary: TLITE_EXP_KO rewrites the WGSL at load, the
# results are wrong by design) to see what the decode GEMVs and the coop prefill GEMM spend
# their time on. Decode (tg128, 1.17B and 8L bodies): gnoscale (no scale/bias loads), gnox (no
# activation loads), gnoreduce (no shared-memory reduction), gnoload (no weight loads). Prefill
# (pp512, 8L body): cnox (no activation loads), cnoq (no weight loads), cnomma (no
# multiply-adds), cnofetch (no global loads after the first step), cnostash (neither global
# loads nor shared stores after the first step: multiply-adds and barriers only).
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; gunzip -c target/car3/ko.gz > /tmp/bin/ko; chmod +x /tmp/bin/ko; T=/tmp/bin/ko
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 > /dev/null && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
for r in 1 2; do for ko in none gnoscale gnox gnoreduce gnoload; do for m in b1 b8; do
  echo -n "round $r $ko $m "; TLITE_EXP_KO=$ko $T bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E "^tg|rror"; done; done; done
for r in 1 2; do for ko in none cnox cnoq cnomma cnofetch cnostash; do
  echo -n "round $r $ko b8 "; TLITE_EXP_KO=$ko $T bench /tmp/b8.m -p 512 -n 8 -r 3 2>&1 | grep -E "^pp|rror"; done; done
