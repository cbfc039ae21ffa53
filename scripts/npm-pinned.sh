#!/usr/bin/env bash
# Installs pinned npm packages into <repo>/.cache/NAME, idempotently, and
# checks each is there at its exact version afterwards:
#   bash scripts/npm-pinned.sh NAME package@version [package@version ...]
# Used by setup-browser.sh and setup-gateway-client.sh; tests find the
# packages under .cache/NAME/node_modules.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: npm-pinned.sh NAME package@version ..." >&2; exit 2; }
name=$1
shift
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$repo_root/.cache/$name"

fail() {
  echo "npm-pinned ($name): $*" >&2
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

all_there() {
  local spec
  for spec in "$@"; do
    [ "$(installed_version "${spec%@*}")" = "${spec##*@}" ] || return 1
  done
}

if ! all_there "$@"; then
  echo "npm-pinned: installing $* into $prefix"
  mkdir -p "$prefix"
  [ -f "$prefix/package.json" ] || echo '{"private": true}' > "$prefix/package.json"
  # No package here downloads a browser; this keeps any from trying.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$prefix" --no-audit --no-fund \
    --loglevel=error --save-exact "$@" || fail "npm install of $* failed"
fi
for spec in "$@"; do
  [ "$(installed_version "${spec%@*}")" = "${spec##*@}" ] \
    || fail "${spec%@*} ${spec##*@} is not in $prefix after install"
done
echo "npm-pinned ($name): ok ($*)"
