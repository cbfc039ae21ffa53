#!/usr/bin/env bash
# Mobile figures for docs/benchmarks.md ("Mobile"):
# 1. the size of the stripped phone library for x86_64, built with the
#    profile the Android and iOS builds use (`--profile mobile`, workspace
#    Cargo.toml; scripts/mobile-lib.sh builds it and prints the size);
# 2. the time of an FFI round trip listing 1,500 entries from Kotlin on the
#    JVM (JNA) against that library, and the same list in-process in Rust
#    (cargo bench --bench mobile), so the FFI share shows.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/mobile-lib.sh
lib_dir=$(cd "${CARGO_TARGET_DIR:-target}/mobile" && pwd)

# The Kotlin side: the test jar holds ListBench (scripts/test-mobile.sh builds it).
bash scripts/setup-mobile.sh
kotlin=.cache/kotlin/node_modules/kotlin-compiler
jars=/usr/share/java
cp="$kotlin/lib/kotlin-stdlib.jar:$kotlin/lib/kotlinx-coroutines-core-jvm.jar:$jars/jna.jar"
[ -f target/kotlin-tests/tests.jar ] || { echo "run scripts/test-mobile.sh first (builds the Kotlin jar)" >&2; exit 1; }
java -Djna.library.path="$lib_dir" -cp "$cp:target/kotlin-tests/tests.jar" org.satchel.android.ListBenchKt

cargo bench -q -p satchel-core --features mobile --bench mobile
