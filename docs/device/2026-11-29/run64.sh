#!/usr/bin/env bash
# Prepared for the next session (not run: this session's device time was spent). Branch
# next/gate-up-join: gate and up joined at load into one weight, one prefill GEMM into
# [seq, gate | up] (glu_pair/glu_pair_h after it), decode unchanged (the GLU GEMV over the joined
# weight). Binary `gu` = exp/gate-up (next/gate-up-join + TLITE_EXP_NOJOIN=1 to keep gate and up
# apart, as main does), `opsgu` its ops test. Prediction (PERF.md, eighth session, the GEMMs'
# waves): the 7.38B's gate and up GEMMs are 448 tiles each on 132 multiprocessors (3.39 waves
# run as 4); joined, 896 tiles in 7 waves: ~637 us per layer instead of ~730, 7.38B pp512 +5-6%,
# pp2048 +4-6%; 1.17B (256 tiles each, 1.94 -> 3.88 waves) and decode unchanged. Third variant
# (TLITE_EXP_QKV_SMALL=1, with the join): the joined q/k/v on the 128 x 64 tiles (its 192 tiles of
# 128 x 128 ran 1.45 waves as 2); prediction: 7.38B q/k/v GEMM -20-45% if the 128 x 64 kernel
# keeps two workgroups per multiprocessor busy (116 registers), pp512 +1-5%; or slower (f32 input,
# less reuse): this is the A/B.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in gu opsgu; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
echo "=== ops (opsgu), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 60 /tmp/bin/opsgu 2>&1 | grep -E "covered|panicked|[^,] FAIL|glu_pair" | grep -v negated | head -8
T=/tmp/bin/gu
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & mk p4 llama-8b --layers 4 & wait
# variant: "nojoin qkv_small"
one() { set -- $1 "${@:2}"; echo -n "round $r nojoin=$1 qkv_small=$2 $3 ${*:4} | "; TLITE_EXP_NOJOIN=$1 TLITE_EXP_QKV_SMALL=$2 $T bench /tmp/$3.m "${@:4}" -r 3 2>&1 | grep -E "^(pp|tg)|rror" | tr '\n' ' '; echo; }
for r in 1 2; do for v in "1 0" "0 0" "0 1"; do one "$v" b32 -p 512 -n 4; one "$v" b1 -p 512 -n 4; one "$v" b32 -p 2048 -n 4; one "$v" b32 -p 16 -n 128; one "$v" b1 -p 16 -n 128; done; done
for v in "1 0" "0 0" "0 1"; do set -- $v; echo "=== profile nojoin=$1 qkv_small=$2 b32 pp512"; TLITE_EXP_NOJOIN=$1 TLITE_EXP_QKV_SMALL=$2 $T bench /tmp/b32.m -p 512 -n 4 -r 2 --profile 2>&1 | grep -E "profile prefill|gemm|glu"; done
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
par() { echo "=== parity $*"; timeout 60 $T parity "$@" --data /tmp/txt 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; }
par /tmp/p4.m --prompt-tokens 600 --max-batch 600 --forced 8; par /tmp/b1.m --prompt-tokens 300 --max-batch 300 --forced 8
par /tmp/b1.m --prompt-tokens 100 --max-batch 1 --forced 40
# Knock-outs (TLITE_EXP_GEMV_WG caps a decode GEMV's workgroups; results wrong by design): does a
# GEMV's time follow its waves (5 workgroups of 256 threads per multiprocessor, 660 on the H200)?
# q/k/v 768 -> 660 (-14% rows) and 528; GLU 3584 -> 3300 (-8%); o 512 -> 384 (-25%, under a wave).
# If waves rule, q/k/v at 660 falls by ~25-30%, not 14%.
for k in none qkv:660 qkv:528 gate:3300 o_proj:384; do echo -n "gemv_wg=$k "; TLITE_EXP_GEMV_WG=$k $T bench /tmp/b32.m -p 16 -n 128 -r 2 --profile 2>&1 | grep -E "^  (qkv|o_proj|gate_up_glu) gemv" | tr -s ' ' | tr '\n' ';'; echo; done
