#!/usr/bin/env bash
# fuzz/run.sh SECONDS [TARGET...] — runs each fuzz target (default: all) for SECONDS of wall time
# (wall) each with libFuzzer (cargo-fuzz, nightly toolchain), after writing the seed corpora from the
# project's own writers. Crashes land in fuzz/artifacts/<target>/; a summary line per target
# (executions per second, corpus size, crashes) is printed and appended to fuzz/last-run.txt.
# Needs: rustup's nightly toolchain and `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET="${1:?usage: fuzz/run.sh SECONDS [TARGET...]}"
shift
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(checkpoint deployable gguf chat_template m0e4)

cargo +nightly run --release --bin seeds
: > last-run.txt
status=0
for t in "${TARGETS[@]}"; do
  case "$t" in
    checkpoint|deployable|gguf) max_len=131072 ;;
    *) max_len=16384 ;;
  esac
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t/fuzz.log"
  # -rss_limit_mb: an allocation sized by the input shows up as an out-of-memory crash.
  if ! /usr/bin/time -f "%U %S" -o "artifacts/$t/cpu.txt" cargo +nightly fuzz run "$t" "corpus/$t" -- \
      -max_total_time="$SECONDS_PER_TARGET" -max_len="$max_len" -timeout=10 \
      -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 > "$log" 2>&1; then
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  crashes=$(find "artifacts/$t" -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' | wc -l)
  files=$(find "corpus/$t" -type f | wc -l)
  cpu=$(awk 'END { printf "%.1f", ($1 + $2) / 60 }' "artifacts/$t/cpu.txt")
  line="$t: ${SECONDS_PER_TARGET}s wall, $cpu CPU-minutes, $execs executions ($rate/s), corpus $files files, $crashes crashes/ooms/timeouts"
  echo "$line" | tee -a last-run.txt
done
exit $status
