#!/usr/bin/env bash
# Prefill attention on cooperative matrices (branch next/attention-coop, `acoop`) against main
# (`base`, f1397f0: the f32 attention::prefill), alternated over two rounds: pp512 on the 1.17B
# (hd 64), 7.38B and Qwen2.5-1.5B (hd 128) bodies, pp2048 on the 1.17B. Then the ops test with
# cooperative matrices required (attention_coop::prefill against the f64 CPU reference), the
# prefill profiles of both on the 7.38B body, and parity of a 130-token prefill step (1.17B;
# a 4-layer body of the 7.38B's width) for both binaries. Prediction (8L profile, PERF.md:
# attention_prefill 356 µs of ~2,700 per layer at pp512): attention 3-5x faster, pp512 +7-10%
# on the 7.38B body, more on the 1.17B (hd 64) and at pp2048.
# Build: base from main, acoop from the branch (cargo build --release -p tlite-cli, strip, gzip
# into target/car3/), ops from the branch (cargo test --release -p tlite-runtime-gpu --test ops
# --no-run). Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base acoop ops; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/acoop
echo "=== ops (acoop)"; TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/ops 2>&1 | grep -E "attention_coop|covered|failed|panicked|test result" | head -20
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth qwen2.5-1.5b -o /tmp/q15 --vocab 49152 > /dev/null && $T convert /tmp/q15 -o /tmp/q15.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/p4 --vocab 49152 --layers 4 > /dev/null && $T convert /tmp/p4 -o /tmp/p4.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in base acoop; do
  for m in b1 b32 q15; do one $v $m -p 512 -n 4; done
  one $v b1 -p 2048 -n 4; done; done
for v in base acoop; do echo "=== profile $v b32 pp512"; /tmp/bin/$v bench /tmp/b32.m -p 512 -n 4 -r 1 --profile 2>&1 | sed -n '/profile prefill/,$p' | head -8; done
python3 -c "print(('The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. ')*40)" > /tmp/txt
for v in base acoop; do for m in b1 p4; do echo "=== parity $v $m --prompt-tokens 130 --max-batch 130 --forced 8"
  timeout 120 /tmp/bin/$v parity /tmp/$m.m --data /tmp/txt --prompt-tokens 130 --max-batch 130 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done; done
