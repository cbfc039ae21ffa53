#!/usr/bin/env bash
# Mobile figures for docs/benchmarks.md ("Mobile"):
# 1. the size of the stripped release cdylib for x86_64 (the same settings
#    the Android and iOS builds use: see MOBILE_PROFILE below);
# 2. the time of an FFI round trip listing 1,500 entries from Kotlin on the
#    JVM (JNA) against that library, and the same list in-process in Rust
#    (cargo bench --bench mobile), so the FFI share shows.
set -euo pipefail
cd "$(dirname "$0")/.."
# Release settings for the mobile libraries (env, so the workspace's own
# release profile stays as it is): fat LTO, one codegen unit, symbols
# stripped. panic stays "unwind": uniffi turns Rust panics into exceptions.
export CARGO_PROFILE_RELEASE_LTO=fat
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_STRIP=symbols
out=target/mobile-release
CARGO_TARGET_DIR=$out cargo build -q -p satchel-core --lib --release
so=$out/release/libsatchel_core.so
bytes=$(stat -c %s "$so")
echo "cdylib x86_64 (stripped, fat LTO): $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.2f MiB", b / 1048576 }'))"
unset CARGO_PROFILE_RELEASE_LTO CARGO_PROFILE_RELEASE_CODEGEN_UNITS CARGO_PROFILE_RELEASE_STRIP

# The Kotlin side: the test jar holds ListBench (scripts/test-mobile.sh builds it).
bash scripts/setup-mobile.sh
kotlin=.cache/kotlin/node_modules/kotlin-compiler
jars=/usr/share/java
cp="$kotlin/lib/kotlin-stdlib.jar:$kotlin/lib/kotlinx-coroutines-core-jvm.jar:$jars/jna.jar"
[ -f target/kotlin-tests/tests.jar ] || { echo "run scripts/test-mobile.sh first (builds the Kotlin jar)" >&2; exit 1; }
java -Djna.library.path="$PWD/$out/release" -cp "$cp:target/kotlin-tests/tests.jar" org.satchel.android.ListBenchKt

cargo bench -q -p satchel-core --bench mobile
