#!/usr/bin/env bash
# Perplexity on the GPU vs tlite's own pp512 on the 7.38B body (Llama-3-8B shapes, vocab 49,152).
set -uo pipefail
source .gl/enter.sh | tee $OUT/gpu2.txt
R=$PWD; T=$R/target/ev/tlite; D=$R/.cache/corpus/brown.txt; chmod +x $T
cd /tmp
s() { date +%s.%N; }
el() { python3 -c "print(f'{$(s)-$1:.1f}')"; }
if [ ! -f /tmp/l8m/model.safetensors ]; then
  t=$(s); $T synth llama-8b --vocab 49152 -o /tmp/l8 --seed 7 >/dev/null; echo "synth8 $(el $t) s" | tee -a $OUT/log2.txt
  t=$(s); $T convert /tmp/l8 -o /tmp/l8m -g 64 --quantizer minmax >/dev/null; echo "convert8 $(el $t) s" | tee -a $OUT/log2.txt
  rm -rf /tmp/l8
fi
for r in 1 2; do
  t=$(s); $T bench /tmp/l8m -p 512 -n 16 -r 3 --json > $OUT/bench8-$r.json 2>/tmp/b.err; echo "bench8 $r rc=$? $(el $t) s" | tee -a $OUT/log2.txt
  t=$(s); $T ppl /tmp/l8m --data $D --ctx 512 --chunks 64 --device gpu --json > $OUT/ppl8-$r.json 2>/tmp/p.err; echo "ppl8 $r rc=$? $(el $t) s" | tee -a $OUT/log2.txt; tail -2 /tmp/p.err >> $OUT/log2.txt
done
python3 - <<'PY' | tee -a $OUT/log2.txt
import json,os
o=os.environ['OUT']
for r in (1,2):
    b=json.load(open(f'{o}/bench8-{r}.json')); p=json.load(open(f'{o}/ppl8-{r}.json'))
    pp=b.get('pp_tok_s'); pp=pp if isinstance(pp,(int,float)) else pp
    print(r, 'bench', {k:b[k] for k in b if 'tok_s' in k}, 'ppl tok/s', p['tokens_per_second'], 'ppl', p['ppl'])
PY
