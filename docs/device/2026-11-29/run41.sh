#!/usr/bin/env bash
# The two prepared A/Bs in one call (run38's and run40's, trimmed): base = main e770613,
# f16all = branch next/f16-all (f16 input, 16-byte loads, on every coop kernel in every prefill
# step; prediction pp32-pp256 +3-10%, 1.17B pp512 +5%, 7.38B pp512 as main), kv16 = branch
# next/attn-kv16 (the coop prefill attention loads the KV cache 16 bytes at a time; prediction
# attention -15-25%, 1.17B pp512 +3-5%); ops16all / opskv16 = each branch's ops test binary.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base f16all kv16 ops16all opskv16; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
for o in ops16all opskv16; do echo "=== ops ($o), cooperative matrices required"
  TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/$o 2>&1 | grep -E "_h::|attention_coop|covered|panicked|test result" | head -40; done
T=/tmp/bin/base
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk b32 llama-8b & mk p4 llama-8b --layers 4 & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
par() { echo "=== parity $1 $2 --prompt-tokens $3 (KV cache ${4:-f32})"; TLITE_KV_CACHE=${4:-f32} timeout 120 /tmp/bin/$1 parity /tmp/$2.m --data /tmp/txt --prompt-tokens $3 --max-batch $3 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; }
for m in p4 b1; do for n in 600 130 30; do par f16all $m $n; done; for kv in f16 f32; do for n in 600 130; do par kv16 $m $n $kv; done; done; done
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base f16all kv16; do for p in 32 128 512; do one $v b32 -p $p -n 4; done; for p in 32 128 512 2048; do one $v b1 -p $p -n 4; done; done; done
for v in base kv16; do echo "=== profile $v b1 pp512"; /tmp/bin/$v bench /tmp/b1.m -p 512 -n 4 -r 2 --profile 2>&1 | grep -E "attention"; done
