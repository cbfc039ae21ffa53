#!/usr/bin/env bash
# Installs what the mobile (Kotlin-on-the-JVM) tests need, idempotently:
# the Kotlin compiler from the npm package kotlin-compiler@2.4.20 into
# .cache/kotlin, and JNA, JUnit 4 and Hamcrest from Debian (jars under
# /usr/share/java). A JDK comes with Debian's default-jdk-headless.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache

need_apt=()
command -v javac >/dev/null || need_apt+=(default-jdk-headless)
[ -f /usr/share/java/jna.jar ] || need_apt+=(libjna-java)
[ -f /usr/share/java/junit4.jar ] || need_apt+=(junit4)
[ -f /usr/share/java/hamcrest-core.jar ] || need_apt+=(libhamcrest-java)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "setup-mobile: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

kotlin=.cache/kotlin/node_modules/kotlin-compiler
if [ ! -x "$kotlin/bin/kotlinc-jvm" ]; then
  echo "setup-mobile: installing npm kotlin-compiler@2.4.20 into .cache/kotlin"
  command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq npm >/dev/null; }
  mkdir -p .cache/kotlin
  (cd .cache/kotlin && npm install --no-audit --no-fund --loglevel=error kotlin-compiler@2.4.20 >/dev/null)
fi
