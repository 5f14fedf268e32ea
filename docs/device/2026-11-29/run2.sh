#!/usr/bin/env bash
# One call: the vector decode GEMVs (gemv_m0e4_v4, gemv_m0e4_norm_v4, gemv_m0e4_glu_v4: one
# vec4<u32> of 4 words and one scale/bias per thread and row per step; an experimental binary,
# TLITE_EXP_GV4=1 selects them) against the scalar ones, and a knock-out of the pair decode's
# half-to-float conversion (TLITE_EXP_KO=gbits: wrong results by design) on each; tg128 on the
# 1.17B, 8L and Qwen2.5-1.5B bodies, two rounds; then decode-path parity with the vector GEMVs.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; gunzip -c target/car3/new.gz > /tmp/bin/new; chmod +x /tmp/bin/new; T=/tmp/bin/new
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 > /dev/null && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth qwen2.5-1.5b -o /tmp/q15 > /dev/null && $T convert /tmp/q15 -o /tmp/q15.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
for r in 1 2; do for v in base gv4 gbits gv4+gbits; do for m in b1 b8 q15; do
  case $v in base) E="";; gv4) E="TLITE_EXP_GV4=1";; gbits) E="TLITE_EXP_KO=gbits";; gv4+gbits) E="TLITE_EXP_GV4=1 TLITE_EXP_KO=gbits";; esac
  echo -n "round $r $v $m "; env $E $T bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E "^tg|rror"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 10); do cat /tmp/txt; done > /tmp/txt3
for m in b1 q15; do echo "=== parity $m gv4 --prompt-tokens 8 --forced 24 --max-batch 1"
  TLITE_EXP_GV4=1 timeout 100 $T parity /tmp/$m.m --data /tmp/txt3 --prompt-tokens 8 --forced 24 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
echo "=== profile b8 gv4"; TLITE_EXP_GV4=1 $T bench /tmp/b8.m -p 16 -n 32 -r 1 --profile 2>&1 | grep -E "gemv|attention|rope" | head -12
