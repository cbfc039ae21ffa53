#!/usr/bin/env bash
# The whole test suite: installs test fixtures, then runs every test of the
# workspace. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export SATCHEL_FHIR_EXAMPLES="$PWD/.cache/npm/node_modules/hl7.fhir.r4.examples"
# The end-to-end tests drive the real binaries; build them first.
cargo build --workspace --bins
cargo test --workspace
