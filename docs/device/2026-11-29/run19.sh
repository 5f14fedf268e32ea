#!/usr/bin/env bash
# run18's depth scan: one 256-thread workgroup per head wins at 1-64 keys (+3.7%, 1.17B) and
# loses past ~200 (-10% at 449-512 keys); 1024 threads win everywhere from 129 keys on (+2-6%)
# and lose 1.3% to 256 at 1-64. The branch now has both entry points: `decode` (256 threads) up
# to ATTENTION_DECODE_NARROW_KEYS keys, `decode_wide` (1024) up to 512, partial + combine past
# that. Variants: base (main: partial + combine), two64 (NARROW_KEYS = 64), two128 (128), wide
# (0: decode_wide only). tg128 (positions 0-127), tg64 @ d64, tg64 @ d448 on the 1.17B body;
# tg128, tg64 @ d448 on the 7.38B body; two rounds alternated. Then two64's decode-path parity
# (1.17B, 2 x 300 positions: both entry points and the split past 512 keys) and the ops test
# (28 entry points with the cooperative matrices required). Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base two64 two128 wide ops; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/two64
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
one() { echo -n "round $r $1 $2 "; /tmp/bin/$1 bench /tmp/$2.m -p 64 "${@:3}" -r 3 2>&1 | grep -E "^tg|rror"; }
for r in 1 2; do for v in base two64 two128 wide; do
  one $v b1 -n 128; one $v b1 -d 64 -n 64; one $v b1 -d 448 -n 64
  one $v b32 -n 128; one $v b32 -d 448 -n 64; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place.\n' > /tmp/txt
for i in $(seq 40); do cat /tmp/txt; done > /tmp/txt3
echo "=== parity b1 two64 --prompt-tokens 8 --forced 600 --max-batch 1"
timeout 200 $T parity /tmp/b1.m --data /tmp/txt3 --prompt-tokens 8 --forced 600 --max-batch 1 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"
echo "=== ops"; TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/ops 2>&1 | grep -E "decode|covered|failed|panicked|test result" | head -24
