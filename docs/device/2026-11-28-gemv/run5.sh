#!/usr/bin/env bash
# The call of run4.sh again, with the final tree's binary: gemv_m0e4 back in its norm-free form
# and the fused norm in its own entry point (gemv_m0e4_norm). Carry [".gl", "target/car"].
exec bash "$(dirname "$0")/run4.sh"
