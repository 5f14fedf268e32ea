#!/usr/bin/env bash
# run29: f16 inputs gained at pp512 (7.38B +10.4%, 1.17B +7.6%) but lost at pp128 (-6.4%) and
# pp32 (-1.5%) on the 7.38B body. Per-op profiles of both binaries at pp128 and pp32 (and the
# 1.17B at pp128) to find which op loses.
# Carry [".gl", "target/car3"].
source .gl/enter.sh; export XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/bin; for b in base f16in; do gunzip -c target/car3/$b.gz > /tmp/bin/$b; chmod +x /tmp/bin/$b; done; T=/tmp/bin/f16in
( $T synth llama-8b -o /tmp/b32 --vocab 49152 > /dev/null && $T convert /tmp/b32 -o /tmp/b32.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
( $T synth llama-1b -o /tmp/b1 --vocab 49152 > /dev/null && $T convert /tmp/b1 -o /tmp/b1.m -g 64 --quantizer minmax 2>&1 | tail -n1 ) &
wait
for m in b32 b1; do for p in 128 32; do for v in base f16in; do echo "=== profile $v $m pp$p"
  /tmp/bin/$v bench /tmp/$m.m -p $p -n 4 -r 2 --profile 2>&1 | sed -n '/profile prefill/,/^NVIDIA/p' | grep -v "^NVIDIA"; done; done; done
