#!/usr/bin/env bash
# One call: decode attention's key and value loops with four loads per iteration (att) against
# 6d3f56d's decode path (old), alternated: tg128 from position 0 on the 1.17B and 8-layer 8B
# bodies, and tlite run's decode after a ~1,000-token prompt (32 splits of ~35 keys) on a mkmodel
# 1.17B body. Carry [".gl", "target/car"] (the binaries gzipped, mkmodel.py and SmolLM2's tokenizer).
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in old att; do gunzip -c target/car/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/att
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
( python3 target/car/mkmodel.py 1b /tmp/m1b && $T convert /tmp/m1b -o /tmp/m1b.m0e4 -g 64 ) > /tmp/c4.log 2>&1 &
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log; tail -n1 /tmp/c4.log
for r in 1 2; do for b in old att; do for m in b1 b8; do
  echo "--- round $r $b $m $(/tmp/bin/$b bench /tmp/$m.m -p 16 -n 128 -r 3 2>&1 | grep -E 'tg128')"; done; done; done
P=$(for i in $(seq 60); do printf 'The jury further said in term-end presentments that the City Executive Committee deserves praise. '; done)
for r in 1 2; do for b in old att; do
  /tmp/bin/$b run /tmp/m1b.m0e4 -p "$P" -n 128 --max-seq 2048 --max-batch 2048 --json 2>/tmp/err.txt \
    | python3 -c "import json,sys; d=json.load(sys.stdin); s=d['stats']; print('long $b', len(d['prompt_ids']), 'prompt tokens, decode tok/s %.1f' % s['decode_tok_s'], s['generated'])" || tail -3 /tmp/err.txt
done; done
