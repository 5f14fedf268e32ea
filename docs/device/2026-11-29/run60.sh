#!/usr/bin/env bash
# Eighth session. (1) next/att-decode-unroll (nx: run59's variant a12 written as code) against
# main (44f987d), decode and prefill. (2) The coop prefill attention's query blocks paired
# (branch exp/att-pair, binary `pair`, TLITE_EXP_PAIR=1: workgroup x takes block x, then block
# nb - 1 - x; the grid halved). At pp512 the 256 workgroups of 4 subgroups (32 heads x 8 blocks)
# run in one wave, 2 per multiprocessor, and the step waits for the heaviest block (16 key tiles
# per pass, the lightest 2); paired, every workgroup takes 18 tiles per pass over 2 blocks and
# no more than the heaviest did alone... prediction: attention_prefill -30-40% at pp512, 7.38B
# pp512 +4-5%, 1.17B +6-9%; pp2048 smaller. (3) Knock-outs of the coop prefill attention
# (TLITE_EXP_KO: 1 pass 1, 2 the K/V loads, 4 the QK multiply-adds, 8 the PV multiply-adds;
# results wrong by design, timings not): what its time is spent on. Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in main nx pair opspair; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
for p in 0 1; do echo "=== ops (opspair) TLITE_EXP_PAIR=$p, cooperative matrices required"
TLITE_EXP_PAIR=$p TLITE_REQUIRE_COOPMAT=1 timeout 60 /tmp/bin/opspair 2>&1 | grep -E "covered|panicked|[^,] FAIL" | grep -v negated | head -8; done
T=/tmp/bin/main
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & mk p4 llama-8b --layers 4 & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
par() { echo "=== parity $* "; timeout 120 "$@" 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; }
for p in 0 1; do export TLITE_EXP_PAIR=$p
par /tmp/bin/pair parity /tmp/p4.m --data /tmp/txt --prompt-tokens 600 --max-batch 600 --forced 8
par /tmp/bin/pair parity /tmp/b1.m --data /tmp/txt --prompt-tokens 300 --max-batch 300 --forced 8; done; unset TLITE_EXP_PAIR
par /tmp/bin/nx parity /tmp/b1.m --data /tmp/txt --prompt-tokens 100 --max-batch 1 --forced 40
one() { echo -n "round $r $1 $2 ${*:3} | "; $1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^(pp|tg)|rror" | tr '\n' ' '; echo; }
for r in 1 2; do
  for v in main nx; do one /tmp/bin/$v b32 -p 16 -n 128; one /tmp/bin/$v b1 -p 16 -n 128; done
  for v in main nx pair0 pair1; do b=/tmp/bin/$v; case $v in pair0) b=/tmp/bin/pair; export TLITE_EXP_PAIR=0;; pair1) b=/tmp/bin/pair; export TLITE_EXP_PAIR=1;; esac
    echo -n "[$v] "; one $b b32 -p 512 -n 4; echo -n "[$v] "; one $b b1 -p 512 -n 4; echo -n "[$v] "; one $b b32 -p 2048 -n 4; unset TLITE_EXP_PAIR; done
done
echo "=== attention_prefill per step (pair binary), b32 and b1 pp512: TLITE_EXP_PAIR, TLITE_EXP_KO"
for m in b32 b1; do for pk in "0 0" "1 0" "0 1" "0 2" "0 4" "0 8" "0 12"; do set -- $pk
  echo -n "$m pair=$1 ko=$2 "; TLITE_EXP_PAIR=$1 TLITE_EXP_KO=$2 /tmp/bin/pair bench /tmp/$m.m -p 512 -n 4 -r 2 --profile 2>&1 | grep -E "attention_prefill" | tr '\n' ' '; echo; done; done
