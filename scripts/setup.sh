#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, into .cache/ (not
# committed): the official FHIR R4 examples from npm, the FHIR validator and
# schemathesis from PyPI.
# Idempotent; safe to run on every test run.
# `bash scripts/setup.sh schemathesis` installs schemathesis only.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache

python_venv() {
  command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 python3-venv; }
  python3 -m venv "$1" 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv "$1"; }
}

# Fuzzing the relay's HTTP API from its own OpenAPI document
# (relay_survives_schemathesis): PyPI schemathesis in its own virtual
# environment (fhir.resources below needs pydantic 1).
st_venv=.cache/venv-schemathesis
if ! "$st_venv/bin/schemathesis" --version >/dev/null 2>&1; then
  echo "setup: installing PyPI schemathesis==4.32.5 into $st_venv"
  python_venv "$st_venv"
  "$st_venv/bin/pip" install -q --disable-pip-version-check 'schemathesis==4.32.5'
fi
if [ "${1:-}" = schemathesis ]; then
  exit 0
fi

examples=.cache/npm/node_modules/hl7.fhir.r4.examples
if [ ! -f "$examples/Patient-example.json" ]; then
  echo "setup: installing npm hl7.fhir.r4.examples@4.0.1 into .cache/npm"
  mkdir -p .cache/npm
  (cd .cache/npm && npm install --no-audit --no-fund --loglevel=error hl7.fhir.r4.examples@4.0.1 >/dev/null)
fi

# FHIR validation of what we export: PyPI fhir.resources 6.4.0 (FHIR R4
# 4.0.1, needs pydantic 1) in a virtual environment.
venv=.cache/venv
if ! "$venv/bin/python" -c 'import fhir.resources' >/dev/null 2>&1; then
  echo "setup: installing PyPI fhir.resources==6.4.0 into .cache/venv"
  python_venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'fhir.resources==6.4.0' 'pydantic<2'
fi

# The printed emergency card, read back (scripts/read_wallet_card.py):
# PyPI pypdf, zxing-cpp and pillow in the same venv, Debian poppler-utils.
if ! "$venv/bin/python" -c 'import pypdf, zxingcpp, PIL' >/dev/null 2>&1; then
  echo "setup: installing PyPI pypdf, zxing-cpp, pillow into .cache/venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'pypdf==5.4.0' 'zxing-cpp==2.3.0' 'pillow==11.2.1'
fi
command -v pdftoppm >/dev/null || { apt-get update -qq && apt-get install -y -qq poppler-utils; }

# Share links: Debian chromium driven by npm playwright-core (the viewer in
# a real browser) and npm jose (our files decrypted by another JOSE
# implementation), into .cache/browser.
bash scripts/setup-browser.sh

# The gateway spoken to by a third-party FHIR client: npm fhir-kit-client and
# jose into .cache/gateway-client (tests/tests/gateway_third_party.rs).
bash scripts/setup-gateway-client.sh
