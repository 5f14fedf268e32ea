#!/usr/bin/env bash
# One call: short prefills on cooperative matrices (new: gemm_m0e4_coop_few for 2-256 tokens)
# against the tree before (base: gemv_m0e4 per token below 16 tokens, gemv_m0e4_tokens to 48,
# the coop GEMM above), alternated over two rounds on the 7.38B and 1.17B bodies; a ladder of
# prompt lengths for the crossover with the coop GEMM; the ops test on the H200 (cooperative
# matrices required); parity of new on steps of 9 and 60 tokens; the 9-token prefill's profile.
# Carry [".gl", "target/car2"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base new ops; do gunzip -c target/car2/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done
T=/tmp/bin/new
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/f8 --vocab 49152 && $T convert /tmp/f8 -o /tmp/f8.m -g 64 --quantizer minmax ) > /tmp/c4.log 2>&1 &
echo "=== ops (coop required)"
TLITE_REQUIRE_COOPMAT=1 /tmp/bin/ops every_entry_point_matches_the_cpu --nocapture 2>&1 | grep -E "coop_few|failed|panicked|SKIPPED|test result" | head -24
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c4.log
for r in 1 2; do for b in base new; do echo "--- round $r $b"
  for p in 9 32 128; do echo -n "f8 "; /tmp/bin/$b bench /tmp/f8.m -p $p -n 4 -r 5 2>&1 | grep -E "^pp"; done
  for p in 9 128; do echo -n "b1 "; /tmp/bin/$b bench /tmp/b1.m -p $p -n 4 -r 5 2>&1 | grep -E "^pp"; done; done; done
echo "=== ladder f8"
for b in base new; do for p in 2 16 48 64 256; do echo -n "$b f8 "; /tmp/bin/$b bench /tmp/f8.m -p $p -n 4 -r 3 2>&1 | grep -E "^pp"; done; done
printf 'The Fulton County Grand Jury said Friday an investigation of recent primary election produced no evidence that any irregularities took place. The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, deserves the praise and thanks of the City of Atlanta.\n' > /tmp/txt
cat /tmp/txt /tmp/txt /tmp/txt > /tmp/txt3
for pm in 40:9 60:64; do pt=${pm%%:*}; mb=${pm#*:}; echo "=== parity b1 new --prompt-tokens $pt --max-batch $mb"
  timeout 200 $T parity /tmp/b1.m --data /tmp/txt3 --prompt-tokens $pt --forced 24 --max-batch $mb 2>&1 | grep -E "top-1|mean KLD|PASS|FAIL|rror"; done
echo "=== profile f8 new, 9-token prefill"; $T bench /tmp/f8.m -p 9 -n 4 -r 1 --profile 2>&1 | grep -A16 "profile prefill"
