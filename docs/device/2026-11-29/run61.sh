#!/usr/bin/env bash
# Eighth session, last call: the side-by-side on main (b651174: no workgroup zeroing, the decode
# attention's loads ahead, the coop prefill attention's blocks paired; its tlite in .peer/carry):
# shared/peer/side-by-side.sh 8b, then llama.cpp's 7.38B pp512 by default (coopmat2) and with KHR
# cooperative matrices only alternated with tlite's, then side-by-side.sh 1b, pp9; then, if time
# is left, exp/att-qk (`qk`, TLITE_EXP_QK=1: the coop prefill attention's two S tiles as two
# interleaved chains of multiply-adds) against the same binary without it. Prediction for it:
# attention_prefill -5-15% (its QK multiply-adds are 29% of it, run60), pp512 +0.5-1.5%.
# Carry [".peer/carry", ".gl", "target/car3"]. Logs go to $OUT as they are written.
mkdir -p $OUT /tmp/bin
bash .peer/carry/side-by-side.sh 8b 2>&1 | tee $OUT/sbs-8b.txt
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp; T=.peer/carry/tlite
for r in 1 2; do
  echo "=== round $r: llama.cpp default (coopmat2), 7.38B pp512"; /tmp/lc/bin/llama-bench -m /tmp/m8b.q4_0.gguf -ngl 99 -fa 1 -p 512 -n 0 -r 3 2>&1 | grep -E "^\| +llama"
  echo "=== round $r: llama.cpp KHR cooperative matrices only, 7.38B pp512"; GGML_VK_DISABLE_COOPMAT2=1 /tmp/lc/bin/llama-bench -m /tmp/m8b.q4_0.gguf -ngl 99 -fa 1 -p 512 -n 0 -r 3 2>&1 | grep -E "^\| +llama"
  echo "=== round $r: tlite 7.38B pp512"; $T bench /tmp/m8b.m0e4 -p 512 -n 4 -r 3 2>&1 | grep -E "^pp"
done 2>&1 | tee $OUT/pp512.txt
bash .peer/carry/side-by-side.sh 1b 2>&1 | tee $OUT/sbs-1b.txt
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
for m in /tmp/m1b.m0e4 /tmp/m8b.m0e4; do echo -n "$m "; $T bench $m -p 9 -n 4 -r 5 2>&1 | grep -E "^pp9"; done | tee $OUT/pp9.txt
for b in qk opsqk; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
{ echo "=== ops (opsqk) TLITE_EXP_QK=1, cooperative matrices required"
TLITE_EXP_QK=1 TLITE_REQUIRE_COOPMAT=1 timeout 60 /tmp/bin/opsqk 2>&1 | grep -E "covered|panicked|[^,] FAIL" | grep -v negated | head -8
for r in 1 2; do for q in 0 1; do for m in m8b m1b; do echo -n "round $r qk=$q $m "; TLITE_EXP_QK=$q /tmp/bin/qk bench /tmp/$m.m0e4 -p 512 -n 4 -r 3 2>&1 | grep -E "^pp"; done; done; done
for q in 0 1; do echo -n "qk=$q m8b "; TLITE_EXP_QK=$q /tmp/bin/qk bench /tmp/m8b.m0e4 -p 512 -n 4 -r 2 --profile 2>&1 | grep attention_prefill; done; } 2>&1 | tee $OUT/qk.txt
