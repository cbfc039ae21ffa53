#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, into .cache/ (not
# committed): the official FHIR R4 examples from npm.
# Idempotent; safe to run on every test run.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache

examples=.cache/npm/node_modules/hl7.fhir.r4.examples
if [ ! -f "$examples/Patient-example.json" ]; then
  echo "setup: installing npm hl7.fhir.r4.examples@4.0.1 into .cache/npm"
  mkdir -p .cache/npm
  (cd .cache/npm && npm install --no-audit --no-fund --loglevel=error hl7.fhir.r4.examples@4.0.1 >/dev/null)
fi
