#!/usr/bin/env bash
# One call: knock-outs of the decode attention (branch exp/attn-ko 9746e96 on main 2106f89; TLITE_EXP_KO
# rewrites the WGSL at load or drops a dispatch; results wrong by design, timings not): anoqk (the
# q·k loads from the K cache), anov (the value loads), anored (the max and sum reductions),
# anopart (the whole partial kernel: zeros written), anocomb (the combine kernel's work, the
# dispatch kept), anocombd (the combine dispatch itself), against none; tg128 on the 1.17B and
# 7.38B bodies, two rounds; tg512 on the 1.17B body for none, anopart, anocombd.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; gunzip -c target/car3/ko.gz > /tmp/bin/ko; chmod +x /tmp/bin/ko; T=/tmp/bin/ko
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
for r in 1 2; do for ko in none anoqk anov anored anopart anocomb anocombd; do for m in b1 b32; do
  echo -n "round $r $ko $m "; TLITE_EXP_KO=$ko $T bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E "^tg|rror|panick"; done; done
  for ko in none anopart anocombd; do echo -n "round $r $ko b1 "; TLITE_EXP_KO=$ko $T bench /tmp/b1.m -p 16 -n 512 -r 2 2>&1 | grep -E "^tg|rror"; done; done
