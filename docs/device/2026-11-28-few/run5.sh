#!/usr/bin/env bash
# One call: the candidate (fin: gemm_m0e4_coop_few on 128-thread workgroups for steps of 2-256
# tokens except the LM head, coalesced activation loads in both coop kernels) against the tree
# before (base), alternated over two rounds: pp9 (time to first token) and pp512 on the 7.38B and
# 1.17B bodies; the weights loaded 1 or 4 steps ahead (TLITE_EXP_FEW_FD); the crossover with the
# coop GEMM on the 8-layer body (TLITE_EXP_COOP_SHORT=1: every prefill on the GEMM); parity of
# fin on steps of 9 and 60 tokens; the ops test (coop required). Carry [".gl", "target/car2"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base fin ops; do gunzip -c target/car2/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/fin
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
( $T synth llama-8b -o /tmp/f8 --vocab 49152 && $T convert /tmp/f8 -o /tmp/f8.m -g 64 --quantizer minmax ) > /tmp/c4.log 2>&1 &
echo "=== ops (coop required)"
TLITE_REQUIRE_COOPMAT=1 /tmp/bin/ops every_entry_point_matches_the_cpu --nocapture 2>&1 | grep -E "coop_few|failed|panicked|SKIPPED|test result" | head -12
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log; tail -n1 /tmp/c4.log
for r in 1 2; do for b in base fin; do for m in f8 b1; do echo "--- round $r $b $m"
  for p in 9 512; do /tmp/bin/$b bench /tmp/$m.m -p $p -n 4 -r 5 2>&1 | grep -E "^pp"; done; done; done
  for fd in 1 4; do echo -n "fd=$fd f8 "; TLITE_EXP_FEW_FD=$fd $T bench /tmp/f8.m -p 9 -n 4 -r 5 2>&1 | grep -E "^pp"; done; done
echo "=== crossover b8 (short=1: GEMM; 256: gemm_few)"
for r in 1 2; do for p in 32 48 64 96 128; do for s in 1 256; do echo -n "short=$s "; TLITE_EXP_COOP_SHORT=$s $T bench /tmp/b8.m -p $p -n 4 -r 3 2>&1 | grep -E "^pp"; done; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, deserves the praise and thanks of the City of Atlanta.\n' > /tmp/txt
cat /tmp/txt /tmp/txt /tmp/txt > /tmp/txt3
for pm in 40:9 60:64; do pt=${pm%%:*}; mb=${pm#*:}; echo "=== parity b1 fin --prompt-tokens $pt --max-batch $mb"
  timeout 200 $T parity /tmp/b1.m --data /tmp/txt3 --prompt-tokens $pt --forced 24 --max-batch $mb 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
echo "=== profile f8 fin, 9-token prefill"; $T bench /tmp/f8.m -p 9 -n 4 -r 1 --profile 2>&1 | grep -A16 "profile prefill"
