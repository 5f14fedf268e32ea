#!/usr/bin/env bash
# The final tree (6761659): the ops test with cooperative matrices required (its coop attention
# cases now share one dispatch closure; the f16-input GEMM's bindings are binding::matmul_coop_h)
# and parity of 600- and 130-token prefill steps with the final binary.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in final opsf; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/final
echo "=== ops (final tree), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 150 /tmp/bin/opsf 2>&1 | grep -E "coop|covered|panicked|test result|FAIL" | grep -vE "^matmul_coop(_small|_few)?::" | head -30
mk() { [ -d /tmp/$1.m ] || ( $T synth $2 -o /tmp/$1 --vocab 49152 "${@:3}" > /dev/null && $T convert /tmp/$1 -o /tmp/$1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ); }
mk b1 llama-1b & mk p4 llama-8b --layers 4 & wait
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
for m in p4 b1; do for n in 600 130; do echo "=== parity final $m --prompt-tokens $n --max-batch $n --forced 8"
  timeout 120 $T parity /tmp/$m.m --data /tmp/txt --prompt-tokens $n --max-batch $n --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done; done
