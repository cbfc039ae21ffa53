#!/usr/bin/env bash
# Installs what the browser tests need, idempotently:
#   - Debian's chromium at /usr/bin/chromium (apt-get; no browser download);
#   - npm playwright-core (drives that chromium) and jose (JWE for tests)
#     into <repo>/.cache/browser (scripts/npm-pinned.sh), where
#     tests/browser/viewer.mjs finds them.
# Pinned versions: playwright-core 1.65.2 drives Debian 12's chromium
# (156.x when written); jose 6.2.19.
set -euo pipefail

PLAYWRIGHT_CORE_VERSION=1.65.2
JOSE_VERSION=6.2.19

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

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

bash "$repo_root/scripts/npm-pinned.sh" browser \
  "playwright-core@$PLAYWRIGHT_CORE_VERSION" "jose@$JOSE_VERSION"

echo "setup-browser: ok ($(/usr/bin/chromium --version 2>/dev/null | head -n1); playwright-core $PLAYWRIGHT_CORE_VERSION; jose $JOSE_VERSION)"
