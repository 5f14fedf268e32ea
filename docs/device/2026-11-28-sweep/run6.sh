#!/usr/bin/env bash
# The full default sweep of the 1.17B body over 32 windows of 512, after the in-memory image is
# copied in parallel and the dense bytes are built without per-element iterator chains.
set -uo pipefail
source .gl/enter.sh | tee $OUT/gpu.txt
R=$PWD; T=$R/target/ev/tlite; D=$R/.cache/corpus/brown.txt; chmod +x $T
echo "cpus $(nproc); perf: $(which perf)" | tee -a $OUT/gpu.txt
cd /tmp
s() { date +%s.%N; }
el() { python3 -c "print(f'{$(s)-$1:.1f}')"; }
T0=$(s)
t=$(s); $T synth llama-1b -o /tmp/l1 --seed 7 >/dev/null; echo "synth $(el $t) s" | tee -a $OUT/log.txt
for m in /tmp/l1 /tmp/l1; do t=$(s); $T ppl $m --data $D --ctx 512 --chunks 1 --device gpu --json > /dev/null 2> /tmp/p.err; echo "ppl $m $(el $t) s: $(grep 'GPU memory' /tmp/p.err)" | tee -a $OUT/log.txt; done
left=$(python3 -c "print(int(585-($(s)-$T0)))")
echo "left for the full sweep: $left s" | tee -a $OUT/log.txt
t=$(s); timeout $left $T sweep /tmp/l1 --data $D --ctx 512 --chunks 32 --device gpu --json $OUT/full.json > $OUT/full.md 2> /tmp/full.err; echo "full sweep rc=$? $(el $t) s" | tee -a $OUT/log.txt
grep -E "done in" /tmp/full.err >> $OUT/log.txt
