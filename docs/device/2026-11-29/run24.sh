#!/usr/bin/env bash
# run23: the first coop prefill attention (acoop) was correct (ops NMSE 1.0-1.8e-7; parity
# 100% / 99.27%) but slower than the f32 kernel (7.38B attention_prefill 10.3 -> 12.6 ms per
# step; pp512 -3% on 7.38B, -10% on 1.17B, pp2048 -16%). Two changes on the branch:
# acoop2 = named q and output tiles (no arrays of cooperative matrices, which a driver may keep
# in memory) and the softmax on all 32 lanes (it ran on 16 lanes, one query each, serially over
# 32 keys); acoop3 = acoop2 + each tile of keys and values loaded into registers during the
# previous tile. Prediction: if arrays of coop matrices were spilled, acoop2 is several times
# faster in attention; acoop3 hides one global round trip per tile on top.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base acoop2 acoop3 ops2 ops3; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/acoop3
for o in ops2 ops3; do echo "=== $o"; TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/$o 2>&1 | grep -E "attention_coop|covered|panicked|test result" | head -12; done
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base acoop2 acoop3; do
  one $v b1 -p 512 -n 4; one $v b32 -p 512 -n 4; one $v b1 -p 2048 -n 4; done; done
for v in base acoop2 acoop3; do echo "=== profile $v b32 pp512"; /tmp/bin/$v bench /tmp/b32.m -p 512 -n 4 -r 1 --profile 2>&1 | sed -n '/profile prefill/,$p' | grep -E "profile|attention"; done
