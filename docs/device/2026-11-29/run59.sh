#!/usr/bin/env bash
# Eighth session. (1) Decode attention variants in one binary (branch exp/att-decode, `att`):
# TLITE_EXP_ATT="<unroll> <tpk>" - unroll 1: the key loop issues 8 K loads before using any (4
# accumulators) and the value loop 4 V loads; tpk: threads per key of `attention::decode` (1 on
# main: at <= 128 keys half of its 256 threads idle in the scores); TLITE_EXP_NK: the keys up to
# which `decode` runs rather than `decode_wide` (128 on main; 0 = always decode_wide, 1024
# threads). Prediction: attention_decode -10-30% at tg128, 7.38B decode +1.5-4%. main = main
# (44f987d) as a control of the experiment binary's default. (2) The whole pp512 profile (every
# op, not only the GEMMs) of main on both bodies: where the 7.38B prefill's ~17% outside the
# GEMMs goes. Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in main att opsatt; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
for v in "1 1" "0 2" "1 2"; do echo "=== ops (opsatt) TLITE_EXP_ATT=$v, cooperative matrices required"
TLITE_EXP_ATT="$v" TLITE_REQUIRE_COOPMAT=1 timeout 60 /tmp/bin/opsatt 2>&1 | grep -E "covered|panicked|[^,] FAIL" | grep -v negated | head -8; done
T=/tmp/bin/main
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
echo "=== parity att 1 2 b1 (decode steps)"; TLITE_EXP_ATT="1 2" timeout 120 /tmp/bin/att parity /tmp/b1.m --data /tmp/txt --prompt-tokens 100 --max-batch 1 --forced 40 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"
# variant name, ATT, NK
V=("main|-|-" "a01|0 1|128" "a11|1 1|128" "a02|0 2|128" "a12|1 2|128" "w01|0 1|0" "w11|1 1|0")
one() { IFS='|' read -r name att nk <<< "$1"; b=att; [ "$name" = main ] && b=main
  echo -n "round $r $name $2 ${*:3} | "
  if [ "$att" = - ]; then /tmp/bin/$b bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^tg|rror"
  else TLITE_EXP_ATT="$att" TLITE_EXP_NK=$nk /tmp/bin/$b bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^tg|rror"; fi; }
for r in 1 2; do for v in "${V[@]}"; do one "$v" b32 -p 16 -n 128; one "$v" b1 -p 16 -n 128; one "$v" b32 -p 16 -d 384 -n 64; done; done
echo "=== attention per step, 7.38B tg128 profile"
for v in "${V[@]}"; do IFS='|' read -r name att nk <<< "$v"; echo -n "$name "
  if [ "$att" = - ]; then /tmp/bin/main bench /tmp/b32.m -p 16 -n 128 -r 2 --profile 2>&1 | grep -E "attention|profile decode" | tr '\n' ' '; echo
  else TLITE_EXP_ATT="$att" TLITE_EXP_NK=$nk /tmp/bin/att bench /tmp/b32.m -p 16 -n 128 -r 2 --profile 2>&1 | grep -E "attention|profile decode" | tr '\n' ' '; echo; fi; done
for m in b32 b1; do echo "=== main profile $m pp512 (every op)"; $T bench /tmp/$m.m -p 512 -n 4 -r 2 --profile 2>&1 | sed -n '/profile prefill/,/embed/p'; done
