#!/usr/bin/env bash
# Eighth session: rope_kv::from_qkv4 (branch next/rope4: the prefill's q/k/v split with RoPE and
# the KV write at 4 elements per thread, vector loads and stores) against from_qkv, in one binary
# (exp/rope1: TLITE_EXP_ROPE1=1 keeps from_qkv). rope_kv was 1,051 us of run62's 51,809 us pp512
# step (32 us per layer for ~23 MB). Prediction: rope_kv -50-70%, 7.38B pp512 +1-1.5%. Then
# parity of 300- and 600-token prefill steps. Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in rope opsrope; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
echo "=== ops (opsrope), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 60 /tmp/bin/opsrope 2>&1 | grep -E "covered|panicked|[^,] FAIL|from_qkv4" | grep -v negated | head -8
T=/tmp/bin/rope
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & mk p4 llama-8b --layers 4 & wait
one() { echo -n "round $r rope1=$1 $2 ${*:3} | "; TLITE_EXP_ROPE1=$1 $T bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in 1 0; do one $v b32 -p 512 -n 4; one $v b1 -p 512 -n 4; one $v b32 -p 2048 -n 4; done; done
for v in 1 0; do echo -n "rope1=$v b32 pp512 "; TLITE_EXP_ROPE1=$v $T bench /tmp/b32.m -p 512 -n 4 -r 2 --profile 2>&1 | grep -E "rope_kv|profile prefill" | tr '\n' ' '; echo; done
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
par() { echo "=== parity $*"; timeout 60 $T parity "$@" --data /tmp/txt --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; }
par /tmp/p4.m --prompt-tokens 600 --max-batch 600; par /tmp/b1.m --prompt-tokens 300 --max-batch 300
