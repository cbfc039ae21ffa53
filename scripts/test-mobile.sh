#!/usr/bin/env bash
# The Kotlin tests of the mobile API, on the JVM: the generated bindings,
# the coroutine wrappers and android/src/test/kotlin compiled with kotlinc
# (npm kotlin-compiler), run with JUnit 4 against the host libsatchel_core.so
# (JNA) and a real satchel-sync on loopback. Also checks the committed
# bindings are fresh. Installs what it needs (scripts/setup-mobile.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-mobile.sh
bash scripts/bindings-mobile.sh --check
cargo build -q -p satchel-core --lib
cargo build -q -p satchel-sync-server --bin satchel-sync

kotlin=.cache/kotlin/node_modules/kotlin-compiler
jars=/usr/share/java
cp="$kotlin/lib/kotlin-stdlib.jar:$kotlin/lib/kotlinx-coroutines-core-jvm.jar:$jars/jna.jar:$jars/junit4.jar:$jars/hamcrest-core.jar"
out=target/kotlin-tests
mkdir -p "$out"
sources=$(find android/src/main/kotlin android/src/test/kotlin -name '*.kt' | sort)
stamp="$out/.sources"
# Recompile only when a Kotlin source changed (kotlinc takes a minute).
sum=$(cat $sources | sha256sum | cut -d' ' -f1)
if [ ! -f "$out/tests.jar" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
  echo "test-mobile: kotlinc (generated bindings, wrappers, tests)"
  JAVA_OPTS="-Xss4m" "$kotlin/bin/kotlinc-jvm" -nowarn -jvm-target 17 -cp "$cp" -d "$out/tests.jar" $sources
  echo "$sum" >"$stamp"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
target_dir=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)
java -Djna.library.path="$target_dir/debug" \
  -Dsatchel.sync.bin="$target_dir/debug/satchel-sync" \
  -cp "$cp:$out/tests.jar" org.junit.runner.JUnitCore org.satchel.android.SatchelTest 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line in the plain form (JUnit prints "OK (N tests)" or "Tests run: N,  Failures: F").
awk '/^OK \(/ { gsub(/[()]/, ""); p = $2; f = 0 }
     /^Tests run:/ { gsub(/,/, ""); p = $3 - $5; f = $5 }
     END { printf "kotlin: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
