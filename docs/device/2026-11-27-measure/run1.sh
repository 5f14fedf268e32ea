#!/usr/bin/env bash
# Measuring on the GPU vs the CPU reference, 1.17B random body (tlite synth llama-1b), same windows.
set -uo pipefail
source .gl/enter.sh | tee $OUT/gpu.txt
R=$PWD; T=$R/target/ev/tlite; D=$R/.cache/corpus/brown.txt; chmod +x $T
echo "cpus $(nproc)" | tee -a $OUT/gpu.txt
cd /tmp
s() { date +%s.%N; }
el() { python3 -c "print(f'{$(s)-$1:.1f}')"; }
t=$(s); $T synth llama-1b -o /tmp/l1 --seed 7 >/dev/null; echo "synth $(el $t) s" | tee -a $OUT/log.txt
t=$(s); $T convert /tmp/l1 -o /tmp/l1m -g 64 >/dev/null; echo "convert $(el $t) s" | tee -a $OUT/log.txt
run() { local name=$1; shift; t=$(s); "$@" > $OUT/$name.json 2> /tmp/$name.err; echo "$name rc=$? $(el $t) s" | tee -a $OUT/log.txt; tail -3 /tmp/$name.err >> $OUT/log.txt; }
C="--data $D --ctx 512 --chunks 4 --json"
run ppl-gpu-f32 $T ppl /tmp/l1 $C --device gpu
run ppl-gpu-f16 $T ppl /tmp/l1 $C --device gpu --dense f16
run ppl-cpu $T ppl /tmp/l1 $C --device cpu
run cmp-gpu $T compare /tmp/l1 /tmp/l1m $C --device gpu
run cmp-cpu $T compare /tmp/l1 /tmp/l1m $C --device cpu
run ppl-gpu-m0e4 $T ppl /tmp/l1m $C --device gpu --save-base /tmp/base.tlkl --top-k 64
run cmp-gpu-topk $T compare /tmp/base.tlkl /tmp/l1m $C --device gpu
t=$(s); $T sweep /tmp/l1 --data $D --ctx 512 --chunks 32 --device gpu --configs m0e4-search@64,q4_0@32,m0e4-minmax@128 --json $OUT/sweep3.json > $OUT/sweep3.md 2> /tmp/sweep.err; echo "sweep3 rc=$? $(el $t) s" | tee -a $OUT/log.txt; tail -5 /tmp/sweep.err >> $OUT/log.txt
