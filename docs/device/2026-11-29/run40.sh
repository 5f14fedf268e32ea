#!/usr/bin/env bash
# For the next session (branch next/attn-kv16; not run: no device time left). run36: 16-byte
# loads instead of 8-byte ones made the f16-input coop GEMM 19.6% faster. attention_coop::prefill
# loads the f16 KV cache (bench's and run's default) as vec4<f16>, 8 bytes per load, 8 loads of
# K and 8 of V per thread and tile; the branch loads 16-byte units (8 f16 as vec4<u32>, unpacked;
# the f32 cache keeps 4 f32 per load) through new bindings KCACHE_L/VCACHE_L: 4 loads each.
# Prediction: attention_prefill -15-25% (1.17B pp512 2.9 ms -> ~2.3; 7.38B 6.8 -> ~5.5 ms),
# pp512 +3-5% (1.17B), +1-2% (7.38B), pp2048 more. Build: base = main, kv16 = the branch,
# opskv16 = the branch's ops test binary (its coop attention cases use the f32 cache; the f16
# cache is checked by parity with TLITE_KV_CACHE=f16).
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base kv16 opskv16; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/kv16
echo "=== ops (kv16), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/opskv16 2>&1 | grep -E "attention_coop|covered|panicked|test result" | head -20
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & mk p4 llama-8b --layers 4 & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
for kv in f16 f32; do for m in p4 b1; do for n in 600 130; do echo "=== parity kv16 $m --prompt-tokens $n (KV cache $kv)"
  TLITE_KV_CACHE=$kv timeout 120 $T parity /tmp/$m.m --data /tmp/txt --prompt-tokens $n --max-batch $n --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done; done; done
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base kv16; do one $v b1 -p 512 -n 4; one $v b32 -p 512 -n 4; one $v b1 -p 2048 -n 4; one $v b1 -p 128 -n 4; done; done
for v in base kv16; do echo "=== profile $v b1 pp512"; /tmp/bin/$v bench /tmp/b1.m -p 512 -n 4 -r 2 --profile 2>&1 | grep -E "profile prefill|attention"; done
