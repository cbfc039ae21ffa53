#!/usr/bin/env bash
# Run every fuzz target (fuzz/fuzz_targets) for SECONDS each, one after the
# other, and print a table: target, seconds, executions, result.
#
#   bash scripts/fuzz.sh SECONDS [TARGET...]     # all targets, or the ones named
#   bash scripts/fuzz.sh --seeds                 # regenerate fuzz/corpus (then commit it)
#
# Installs cargo-fuzz into .cache/cargo-fuzz if missing. The stable compiler
# is given cargo-fuzz's nightly flags (sanitizer, coverage) through
# RUSTC_BOOTSTRAP=1: see docs/adr/0006-fuzzing.md. Targets are built once
# (release, debug assertions and AddressSanitizer on) into fuzz/target; each
# run writes new inputs to fuzz/work/<target>/ (git-ignored) and reads the
# committed seeds in fuzz/corpus/<target>/ without changing them. A crash
# leaves its input in fuzz/artifacts/<target>/ and makes the script exit 1;
# minimize it (`cargo fuzz tmin`, see fuzz/README.md) into
# fuzz/regressions/<target>/ and fix it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_INCREMENTAL=0

if [ "${1:-}" = "--seeds" ]; then
  rm -rf fuzz/corpus
  cargo run -q -p satchel-tests --example fuzz_seeds
  exit 0
fi
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...] | --seeds}
shift
case $seconds in ''|*[!0-9]*) echo "SECONDS must be a whole number" >&2; exit 2 ;; esac

fuzz_bin=$root/.cache/cargo-fuzz/bin
if [ ! -x "$fuzz_bin/cargo-fuzz" ]; then
  echo "== installing cargo-fuzz into .cache/cargo-fuzz"
  cargo install cargo-fuzz --locked --root "$root/.cache/cargo-fuzz"
fi
export PATH=$fuzz_bin:$PATH

cd fuzz
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//' | sort)
fi
echo "== building ${#targets[@]} fuzz targets (RUSTC_BOOTSTRAP=1 cargo fuzz build -a)"
start=$(date +%s)
if [ $# -gt 0 ]; then
  for t in "${targets[@]}"; do RUSTC_BOOTSTRAP=1 cargo fuzz build -a --fuzz-dir . "$t"; done
else
  RUSTC_BOOTSTRAP=1 cargo fuzz build -a --fuzz-dir .
fi
echo "== built in $(( $(date +%s) - start )) s"
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=target/$triple/release

# SQLite's amalgamation (bundled by rusqlite, compiled by gcc) has two
# function-local statics named `aiOff`; ASan's name-based ODR check reports
# them as one global defined twice before the first input runs.
export ASAN_OPTIONS=detect_odr_violation=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}

failed=0
printf '%-18s %8s %12s  %s\n' target seconds executions result
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t" "corpus/$t"
  log=work/$t.log
  status=ok
  "$bin_dir/$t" "work/$t" "corpus/$t" \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || status=CRASH
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "$status" = CRASH ]; then
    failed=1
    status="CRASH: $(ls -t "artifacts/$t" | head -1) (log fuzz/$log)"
  fi
  printf '%-18s %8s %12s  %s\n' "$t" "$seconds" "${execs:-?}" "$status"
done
exit $failed
