#!/usr/bin/env bash
# Installs what the browser tests need, idempotently:
#   - Debian's chromium at /usr/bin/chromium (apt-get; no browser download);
#   - npm playwright-core (drives that chromium) and jose (JWE for tests)
#     into <repo>/.cache/browser, where tests/browser/viewer.mjs finds them.
# Pinned versions: playwright-core 1.65.2 drives Debian 12's chromium
# (156.x when written); jose 6.2.19.
set -euo pipefail

PLAYWRIGHT_CORE_VERSION=1.65.2
JOSE_VERSION=6.2.19

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$repo_root/.cache/browser"

fail() {
  echo "setup-browser: $*" >&2
  exit 1
}

if [ ! -x /usr/bin/chromium ]; then
  echo "setup-browser: installing Debian chromium"
  command -v apt-get >/dev/null || fail "/usr/bin/chromium is missing and apt-get is not available"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "need root (or sudo) to apt-get install chromium"
    sudo_cmd="sudo"
  fi
  $sudo_cmd apt-get update -qq || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium \
    || fail "apt-get install chromium failed"
  [ -x /usr/bin/chromium ] || fail "chromium installed but /usr/bin/chromium is missing"
fi

command -v node >/dev/null || fail "node is missing (apt-get install nodejs npm)"
command -v npm >/dev/null || fail "npm is missing (apt-get install npm)"

installed_version() {
  # prints the version of an npm package installed under $prefix, or nothing
  local pkg_json="$prefix/node_modules/$1/package.json"
  [ -f "$pkg_json" ] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version)' "$pkg_json" 2>/dev/null || true
}

if [ "$(installed_version playwright-core)" != "$PLAYWRIGHT_CORE_VERSION" ] \
  || [ "$(installed_version jose)" != "$JOSE_VERSION" ]; then
  echo "setup-browser: installing playwright-core@$PLAYWRIGHT_CORE_VERSION and jose@$JOSE_VERSION into $prefix"
  mkdir -p "$prefix"
  [ -f "$prefix/package.json" ] || echo '{"private": true}' > "$prefix/package.json"
  # playwright-core never downloads a browser; this keeps any other
  # package from trying.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$prefix" --no-audit --no-fund \
    --save-exact "playwright-core@$PLAYWRIGHT_CORE_VERSION" "jose@$JOSE_VERSION" \
    || fail "npm install of playwright-core/jose failed"
fi

[ "$(installed_version playwright-core)" = "$PLAYWRIGHT_CORE_VERSION" ] \
  || fail "playwright-core $PLAYWRIGHT_CORE_VERSION is not in $prefix after install"
[ "$(installed_version jose)" = "$JOSE_VERSION" ] \
  || fail "jose $JOSE_VERSION is not in $prefix after install"

echo "setup-browser: ok ($(/usr/bin/chromium --version 2>/dev/null | head -n1); playwright-core $PLAYWRIGHT_CORE_VERSION; jose $JOSE_VERSION)"
