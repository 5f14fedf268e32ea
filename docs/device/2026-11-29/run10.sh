#!/usr/bin/env bash
# One call (branch next/combo = next/group-blocks + next/warmup on main 543a12b): group words blocked
# by 8 rows, the GEMVs reading several rows' words with vec4 loads (new) against main 543a12b
# (base), alternated over two rounds: tg128 on the 1.17B, 8L, Qwen2.5-1.5B and 7.38B bodies, pp512
# on the 8L body; then `tlite run -n 512` on the 7.38B body with the warm-up (new's default) and
# with --no-warmup, two rounds; new's decode-path parity, a 130-token coop prefill's parity and the
# ops test with cooperative matrices required. Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base new ops; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/new
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 > /dev/null && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth qwen2.5-1.5b -o /tmp/q15 > /dev/null && $T convert /tmp/q15 -o /tmp/q15.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
for r in 1 2; do for b in base new; do for m in b1 b8 q15 b32; do
  echo -n "round $r $b $m "; /tmp/bin/$b bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E "^tg|rror"; done
  echo -n "round $r $b b8 "; /tmp/bin/$b bench /tmp/b8.m -p 512 -n 8 -r 3 2>&1 | grep -E "^pp|rror"; done; done
run() { $T run /tmp/b32.m -p "The Fulton County Grand Jury said" -n 512 --max-seq 1024 --json $1 2>/dev/null \
  | python3 -c "import json,sys; d=json.load(sys.stdin); s=d['stats']; print({k: s[k] for k in ('prefill_tok_s','decode_tok_s','generated') if k in s}, 'warmup_seconds', d.get('warmup_seconds'))"; }
for r in 1 2; do
  echo -n "round $r run new warm-up "; run ""
  echo -n "round $r run new --no-warmup "; run --no-warmup
done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 40); do cat /tmp/txt; done > /tmp/txt3
for m in b1 q15; do echo "=== parity $m new --prompt-tokens 8 --forced 24 --max-batch 1"
  timeout 100 $T parity /tmp/$m.m --data /tmp/txt3 --prompt-tokens 8 --forced 24 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
echo "=== parity b1 new --prompt-tokens 130 --max-batch 130"
timeout 100 $T parity /tmp/b1.m --data /tmp/txt3 --prompt-tokens 130 --max-batch 130 --forced 8 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"
echo "=== ops"; TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/ops 2>&1 | grep -E "covered|failed|panicked|test result" | head -12
