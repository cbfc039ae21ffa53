#!/usr/bin/env bash
# Installs what the gateway's third-party client test needs, idempotently:
# npm fhir-kit-client (a FHIR client written elsewhere) and jose (signs the
# SMART Backend Services client assertion) into <repo>/.cache/gateway-client,
# where tests/gateway/third_party_client.mjs finds them
# (tests/tests/gateway_third_party.rs).
# Pinned versions: fhir-kit-client 2.0.3; jose 6.2.19.
set -euo pipefail

FHIR_KIT_CLIENT_VERSION=2.0.3
JOSE_VERSION=6.2.19

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$repo_root/.cache/gateway-client"

fail() {
  echo "setup-gateway-client: $*" >&2
  exit 1
}

command -v node >/dev/null || fail "node is missing (apt-get install nodejs npm)"
command -v npm >/dev/null || fail "npm is missing (apt-get install npm)"

installed_version() {
  # prints the version of an npm package installed under $prefix, or nothing
  local pkg_json="$prefix/node_modules/$1/package.json"
  [ -f "$pkg_json" ] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version)' "$pkg_json" 2>/dev/null || true
}

if [ "$(installed_version fhir-kit-client)" != "$FHIR_KIT_CLIENT_VERSION" ] \
  || [ "$(installed_version jose)" != "$JOSE_VERSION" ]; then
  echo "setup-gateway-client: installing fhir-kit-client@$FHIR_KIT_CLIENT_VERSION and jose@$JOSE_VERSION into $prefix"
  mkdir -p "$prefix"
  [ -f "$prefix/package.json" ] || echo '{"private": true}' > "$prefix/package.json"
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
    --save-exact "fhir-kit-client@$FHIR_KIT_CLIENT_VERSION" "jose@$JOSE_VERSION" \
    || fail "npm install of fhir-kit-client/jose failed"
fi

[ "$(installed_version fhir-kit-client)" = "$FHIR_KIT_CLIENT_VERSION" ] \
  || fail "fhir-kit-client $FHIR_KIT_CLIENT_VERSION is not in $prefix after install"
[ "$(installed_version jose)" = "$JOSE_VERSION" ] \
  || fail "jose $JOSE_VERSION is not in $prefix after install"

echo "setup-gateway-client: ok (fhir-kit-client $FHIR_KIT_CLIENT_VERSION; jose $JOSE_VERSION)"
