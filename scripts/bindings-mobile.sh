#!/usr/bin/env bash
# Generates the Kotlin and Swift bindings of satchel-core's mobile API
# (core/src/api) with the workspace's uniffi-bindgen, in library mode from
# the host cdylib.
#   bash scripts/bindings-mobile.sh           # write them into android/ and ios/
#   bash scripts/bindings-mobile.sh --check   # regenerate into a temp dir, fail if the committed ones differ,
#                                             # and check the C header with gcc -fsyntax-only
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p satchel-core --lib
cargo build -q -p uniffi-bindgen
target_dir=${CARGO_TARGET_DIR:-target}
lib=$target_dir/debug/libsatchel_core.so
bindgen=$target_dir/debug/uniffi-bindgen
kotlin_dir=android/src/main/kotlin
swift_dir=ios/Sources/SatchelCore
ffi_dir=ios/Sources/SatchelCoreFFI

generate() { # $1: output root
  local out=$1 tmp
  tmp=$(mktemp -d)
  "$bindgen" generate --library "$lib" --language kotlin --no-format --out-dir "$tmp/kotlin" >/dev/null
  "$bindgen" generate --library "$lib" --language swift --no-format --out-dir "$tmp/swift" >/dev/null
  mkdir -p "$out/$kotlin_dir/org/satchel/core" "$out/$swift_dir" "$out/$ffi_dir/include"
  cp "$tmp/kotlin/org/satchel/core/satchel_core.kt" "$out/$kotlin_dir/org/satchel/core/satchel_core.kt"
  cp "$tmp/swift/SatchelCore.swift" "$out/$swift_dir/SatchelCore.swift"
  cp "$tmp/swift/SatchelCoreFFI.h" "$out/$ffi_dir/include/SatchelCoreFFI.h"
  cp "$tmp/swift/SatchelCoreFFI.modulemap" "$out/$ffi_dir/include/module.modulemap"
  rm -rf "$tmp"
}

files=(
  "$kotlin_dir/org/satchel/core/satchel_core.kt"
  "$swift_dir/SatchelCore.swift"
  "$ffi_dir/include/SatchelCoreFFI.h"
  "$ffi_dir/include/module.modulemap"
)

if [ "${1:-}" = "--check" ]; then
  fresh=$(mktemp -d)
  trap 'rm -rf "$fresh"' EXIT
  generate "$fresh"
  stale=0
  for f in "${files[@]}"; do
    if ! diff -q "$fresh/$f" "$f" >/dev/null 2>&1; then
      echo "bindings: $f is stale; run: bash scripts/bindings-mobile.sh" >&2
      stale=1
    fi
  done
  [ "$stale" = 0 ] || exit 1
  # Clang's nullability qualifiers (what Swift reads) are unknown to gcc: define them away.
  echo '#include "SatchelCoreFFI.h"' |
    gcc -fsyntax-only -Wall -Werror -D_Nonnull= -D_Nullable= -I "$ffi_dir/include" -x c -
  echo "bindings: Kotlin, Swift and the C header are fresh; the header compiles (gcc -fsyntax-only)"
else
  generate .
  echo "bindings: wrote ${files[*]}"
fi
