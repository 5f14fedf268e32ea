#!/usr/bin/env bash
# One call: where the time goes on the final tree (fin): decode profiles of the 1.17B and 7.38B
# bodies, the 9-token prefill's profile on the 7.38B body, and tg128 / pp9 timed. Carry
# [".gl", "target/car"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; gunzip -c target/car/fin.gz > /tmp/bin/fin; chmod +x /tmp/bin/fin
T=/tmp/bin/fin
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/f8 --vocab 49152 && $T convert /tmp/f8 -o /tmp/f8.m -g 64 --quantizer minmax ) > /tmp/c4.log 2>&1 &
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c4.log
for m in b1 f8; do echo "=== $m decode"; $T bench /tmp/$m.m -p 16 -n 128 -r 3 --profile > /tmp/p.txt 2>&1
  grep -A14 "profile decode" /tmp/p.txt; grep -E "tg128|dispatches" /tmp/p.txt; done
echo "=== f8 9-token prefill"; $T bench /tmp/f8.m -p 9 -n 4 -r 5 --profile > /tmp/p.txt 2>&1
grep -A16 "profile prefill" /tmp/p.txt; grep -E "^pp9" /tmp/p.txt
