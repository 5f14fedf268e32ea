#!/usr/bin/env bash
# The full default sweep of the 1.17B body on the GPU, 32 windows of 512 (resumable).
set -uo pipefail
source .gl/enter.sh | tee $OUT/gpu3.txt
R=$PWD; T=$R/target/ev/tlite; D=$R/.cache/corpus/brown.txt; chmod +x $T
cd /tmp
[ -f /tmp/l1/config.json ] || $T synth llama-1b -o /tmp/l1 --seed 7 >/dev/null
R0=""; [ -f /tmp/sweep.json ] && R0=--resume
start=$(date +%s.%N)
timeout 570 $T sweep /tmp/l1 --data $D --ctx 512 --chunks 32 --device gpu --json /tmp/sweep.json $R0 > /tmp/sweep.md 2> /tmp/sweep.err
echo "sweep rc=$? $(python3 -c "import time; print(round(time.time()-$start,1))") s" | tee $OUT/log3.txt
cp /tmp/sweep.json /tmp/sweep.md $OUT/ 2>/dev/null; grep -E "done in|calibration|baseline" /tmp/sweep.err | tail -30 >> $OUT/log3.txt
