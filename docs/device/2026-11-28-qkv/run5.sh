#!/usr/bin/env bash
# One call: the norm-fused decode GEMVs in gemv_m0e4's structure below 4096 input columns,
# now that q, k and v are one GEMV (an uncommitted build, exp: TLITE_EXP_QKV_MIN_K /
# TLITE_EXP_GLU_MIN_K lower NARROW_NORM_MIN_K for the qkv and the GLU GEMV) against the final
# tree (fin); tg128 alternated over two rounds on the 1.17B body (k = 2048) and a
# Qwen2.5-1.5B body (k = 1536); decode-path parity of the qkv variant. Carry [".gl", "target/car"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in fin exp; do gunzip -c target/car/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/exp
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth qwen2.5-1.5b -o /tmp/q1 && $T convert /tmp/q1 -o /tmp/q1.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log
cfgs="fin exp:qkv exp:glu exp:both"
for r in 1 2; do for cfg in $cfgs; do b=${cfg%%:*}; v=${cfg#*:}; for m in b1 q1; do
  case $v in qkv) e="TLITE_EXP_QKV_MIN_K=1";; glu) e="TLITE_EXP_GLU_MIN_K=1";; both) e="TLITE_EXP_QKV_MIN_K=1 TLITE_EXP_GLU_MIN_K=1";; *) e="";; esac
  echo "--- round $r $cfg $m $(env $e /tmp/bin/$b bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E 'tg128')"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for m in b1 q1; do echo "=== parity $m exp qkv+glu narrow (decode path)"
  TLITE_EXP_QKV_MIN_K=1 TLITE_EXP_GLU_MIN_K=1 timeout 200 $T parity /tmp/$m.m --data /tmp/txt --prompt-tokens 8 --forced 24 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
echo "=== profile b1 exp qkv narrow"; TLITE_EXP_QKV_MIN_K=1 $T bench /tmp/b1.m -p 16 -n 128 -r 1 --profile 2>&1 | grep -A8 "profile decode"
