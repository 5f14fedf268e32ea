#!/usr/bin/env bash
# Call A: keep SmolLM2 part 1 and the v1 binary in /tmp/keep; make the benchmark bodies; v1 pp.
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
mkdir -p /tmp/keep; cp target/sm1/part1 target/dcv1/tlite /tmp/keep/; T=/tmp/keep/tlite
( $T synth llama-1b -o /tmp/b1 --vocab 49152 && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax ) > /tmp/c2.log 2>&1 &
( $T synth llama-8b -o /tmp/b8 --layers 8 --vocab 49152 && $T convert /tmp/b8 -o /tmp/b8.m -g 64 --quantizer minmax ) > /tmp/c3.log 2>&1 &
wait; tail -n1 /tmp/c2.log; tail -n1 /tmp/c3.log; ls /tmp/keep
