#!/usr/bin/env bash
# One call: decode GEMVs with each workgroup's scales and biases staged in shared memory
# (gemv_m0e4_sb, gemv_m0e4_norm_sb, gemv_m0e4_glu_sb; an experimental binary, TLITE_EXP_SB=1)
# against the tree's; knock-outs for scale: TLITE_EXP_KO=gnobias (bias loads removed) and
# gnoscale (scale and bias loads removed; wrong results by design). tg128 on the 1.17B, 8L,
# Qwen2.5-1.5B and 7.38B bodies, two rounds; decode-path parity of the staged GEMVs.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; gunzip -c target/car3/new.gz > /tmp/bin/new; chmod +x /tmp/bin/new; T=/tmp/bin/new
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 > /dev/null && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth qwen2.5-1.5b -o /tmp/q15 > /dev/null && $T convert /tmp/q15 -o /tmp/q15.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
for r in 1 2; do for v in base sb gnobias gnoscale; do for m in b1 b8 q15 b32; do
  case $v in base) E="";; sb) E="TLITE_EXP_SB=1";; *) E="TLITE_EXP_KO=$v";; esac
  echo -n "round $r $v $m "; env $E $T bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E "^tg|rror"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 10); do cat /tmp/txt; done > /tmp/txt3
for m in b1 q15; do echo "=== parity $m sb --prompt-tokens 8 --forced 24 --max-batch 1"
  TLITE_EXP_SB=1 timeout 100 $T parity /tmp/$m.m --data /tmp/txt3 --prompt-tokens 8 --forced 24 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
for v in base sb; do echo "=== profile b32 $v"; [ $v = sb ] && export TLITE_EXP_SB=1; $T bench /tmp/b32.m -p 16 -n 32 -r 1 --profile 2>&1 | grep -E "gemv  |attention  |rope_kv" | head -8; done
