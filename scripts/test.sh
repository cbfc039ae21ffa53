#!/usr/bin/env bash
# The whole test suite: installs test fixtures, then runs every test of the
# workspace. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export SATCHEL_FHIR_EXAMPLES="$PWD/.cache/npm/node_modules/hl7.fhir.r4.examples"
# Validator for exported FHIR (tests call it; see tests/src/lib.rs).
export SATCHEL_FHIR_VALIDATOR="$PWD/.cache/venv/bin/python $PWD/scripts/fhir_validate.py"
export SATCHEL_REQUIRE_FIXTURES=1
# The end-to-end tests drive the real binaries; build them first.
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
# One closing line for the whole run.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
