#!/usr/bin/env bash
# Seventh session: the side-by-side on branch next/coop-split (the 128 x 128 coop GEMM's weights
# prefetched as 4 words and one raw group word, run53's variant 4 written cleanly; its tlite in
# .peer/carry), then the A/B of main (base) against it on the side-by-side's bodies.
# shared/peer/side-by-side.sh 1b, 8b (llama.cpp 0c1e570); llama.cpp's 7.38B pp512 again by
# default (coopmat2) and with KHR cooperative matrices only, alternated with tlite's; pp9.
# Prediction: 7.38B pp512 +8-10% over main (run53), 1.17B +2-4%; decode unchanged.
# Carry [".peer/carry", ".gl", "target/car3"]. Logs go to $OUT as they are written.
mkdir -p $OUT /tmp/bin
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
for b in base opssplit; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
echo "=== ops (opssplit), cooperative matrices required"
TLITE_REQUIRE_COOPMAT=1 timeout 120 /tmp/bin/opssplit 2>&1 | grep -E "g40|g24|covered|panicked|test result|[^,] FAIL" | grep -v negated | head -20
bash .peer/carry/side-by-side.sh 1b 2>&1 | tee $OUT/sbs-1b.txt
bash .peer/carry/side-by-side.sh 8b 2>&1 | tee $OUT/sbs-8b.txt
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp; T=.peer/carry/tlite
for r in 1 2; do
  echo "=== round $r: llama.cpp default (coopmat2), 7.38B pp512"; /tmp/lc/bin/llama-bench -m /tmp/m8b.q4_0.gguf -ngl 99 -fa 1 -p 512 -n 0 -r 3 2>&1 | grep -E "^\| +llama"
  echo "=== round $r: llama.cpp KHR cooperative matrices only, 7.38B pp512"; GGML_VK_DISABLE_COOPMAT2=1 /tmp/lc/bin/llama-bench -m /tmp/m8b.q4_0.gguf -ngl 99 -fa 1 -p 512 -n 0 -r 3 2>&1 | grep -E "^\| +llama"
  echo "=== round $r: tlite 7.38B pp512"; $T bench /tmp/m8b.m0e4 -p 512 -n 4 -r 3 2>&1 | grep -E "^pp"
done 2>&1 | tee $OUT/pp512.txt
for m in /tmp/m1b.m0e4 /tmp/m8b.m0e4; do echo -n "$m "; $T bench $m -p 9 -n 4 -r 5 2>&1 | grep -E "^pp9"; done | tee $OUT/pp9.txt
one() { echo -n "round $r $1 $2 "; $1 bench /tmp/$2.m0e4 "${@:3}" -r 3 2>&1 | grep -E "^pp|rror"; }
for r in 1 2; do for v in /tmp/bin/base $T; do for p in 512 2048; do one $v m8b -p $p -n 4; one $v m1b -p $p -n 4; done; done; done 2>&1 | tee $OUT/ab.txt
