#!/usr/bin/env bash
# Builds the phone library for the host (x86_64 Linux) with the same profile
# and feature the Android and iOS builds use (`--profile mobile`, workspace
# Cargo.toml; `--features mobile`, core/Cargo.toml) and prints its size in
# bytes. The profile strips symbols; the script strips again only if a
# `strip` is at hand.
#   bash scripts/mobile-lib.sh           # build, print the size
#   bash scripts/mobile-lib.sh --check   # ... and fail above the budget
# Budget: 8 MiB (8,388,608 bytes), docs/mobile.md "Size".
set -euo pipefail
cd "$(dirname "$0")/.."
budget=8388608
cargo build -q -p satchel-core --lib --profile mobile --features mobile
target_dir=${CARGO_TARGET_DIR:-target}
so=$target_dir/mobile/libsatchel_core.so
if command -v strip >/dev/null; then
  stripped=$(mktemp)
  trap 'rm -f "$stripped"' EXIT
  strip -o "$stripped" "$so"
  so=$stripped
fi
bytes=$(stat -c %s "$so")
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.2f MiB", b / 1048576 }')
echo "mobile-lib: libsatchel_core.so x86_64 (cargo build -p satchel-core --lib --profile mobile --features mobile, stripped): $bytes bytes ($mib); budget $budget bytes (8 MiB)"
if [ "${1:-}" = --check ] && [ "$bytes" -gt "$budget" ]; then
  over=$((bytes - budget))
  cat >&2 <<MSG
mobile-lib: FAILED: the phone library is $over bytes over the 8 MiB budget.
  See what each crate adds (symbols kept, same settings otherwise):
    cargo install cargo-bloat
    cargo bloat -p satchel-core --lib --profile mobile-bloat --features mobile --crates -n 30
  and compare with the table in docs/mobile.md "Size". Move code phones do
  not need behind a feature the mobile build does not enable, drop unused
  dependency features, or make the case for a new budget there.
MSG
  exit 1
fi
