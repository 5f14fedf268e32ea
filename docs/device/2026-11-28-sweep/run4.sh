#!/usr/bin/env bash
# Sweep speed: the sweep before (tlite-old, a834ab8: dense folder round trip, M0E4 quantized twice)
# and after (in memory, quantized once) on the 1.17B body, 32 windows of 512; then the full default
# sweep with the new binary.
set -uo pipefail
source .gl/enter.sh | tee $OUT/gpu.txt
R=$PWD; D=$R/.cache/corpus/brown.txt; chmod +x $R/target/ev/tlite $R/target/ev/tlite-old
echo "cpus $(nproc)" | tee -a $OUT/gpu.txt
cd /tmp
s() { date +%s.%N; }
el() { python3 -c "print(f'{$(s)-$1:.1f}')"; }
T0=$(s)
t=$(s); $R/target/ev/tlite synth llama-1b -o /tmp/l1 --seed 7 >/dev/null; echo "synth $(el $t) s" | tee -a $OUT/log.txt
sw() { local name=$1 bin=$2 lim=$3; shift 3; t=$(s); timeout $lim $R/target/ev/$bin sweep /tmp/l1 --data $D --ctx 512 --chunks 32 --device gpu --json $OUT/$name.json "$@" > $OUT/$name.md 2> /tmp/$name.err; echo "$name rc=$? $(el $t) s" | tee -a $OUT/log.txt; grep -E "done in" /tmp/$name.err | tail -20 >> $OUT/log.txt; }
sw new2 tlite 200 --configs m0e4-search@64,q4_0@32
sw old2 tlite-old 240 --configs m0e4-search@64,q4_0@32
left=$(python3 -c "print(int(575-($(s)-$T0)))")
echo "left for the full sweep: $left s" | tee -a $OUT/log.txt
sw full tlite $left
free -g | head -2 >> $OUT/log.txt
