#!/usr/bin/env bash
# One call, one binary (an uncommitted build with both GEMV families; TLITE_EXP_WIDE=1 selects the
# wide ones): the norm-fused q/k/v GEMVs and the GLU GEMV in gemv_m0e4's structure (8 rows per
# 256-thread workgroup, norm applied on the fly) vs the wide ones (16 rows per 128 threads, the
# normalized row staged in shared memory), alternated over two rounds; GPU-vs-CPU parity of the
# decode path on the 1.17B body in both modes; decode profiles. Carry [".gl", "target/car"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; gunzip -c target/car/nn.gz > /tmp/bin/nn; chmod +x /tmp/bin/nn; T=/tmp/bin/nn
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log
for r in 1 2; do for w in narrow wide; do for m in b1 b8; do echo "--- round $r $w $m"
  if [ $w = wide ]; then export TLITE_EXP_WIDE=1; else unset TLITE_EXP_WIDE; fi
  $T bench /tmp/$m.m -p 512 -n 128 -r 3 2>&1 | grep -E "pp512|tg128"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, deserves the praise and thanks of the City of Atlanta.\n' > /tmp/txt
for w in narrow wide; do echo "=== parity b1 $w (decode path: --max-batch 1)"
  if [ $w = wide ]; then export TLITE_EXP_WIDE=1; else unset TLITE_EXP_WIDE; fi
  timeout 200 $T parity /tmp/b1.m --data /tmp/txt --prompt-tokens 8 --forced 24 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|max .Δ|PASS|FAIL|rror"; done
for w in narrow wide; do echo "=== profile b8 $w"
  if [ $w = wide ]; then export TLITE_EXP_WIDE=1; else unset TLITE_EXP_WIDE; fi
  $T bench /tmp/b8.m -p 16 -n 128 -r 1 --profile 2>&1 | grep -A14 "profile decode"; done
