#!/usr/bin/env bash
# Builds libsatchel_core.so for arm64-v8a, armeabi-v7a and x86_64 with
# cargo-ndk into android/src/main/jniLibs/<abi>/. Needs the Android NDK
# (ANDROID_NDK_HOME) and `cargo install cargo-ndk`; not run on this
# project's CI (no NDK there). Profile `mobile` (workspace Cargo.toml: fat
# LTO, one codegen unit, stripped, opt-level "z") and feature `mobile`
# (core/Cargo.toml: no log call sites); the same command for the
# host is scripts/mobile-lib.sh, which CI holds to the size budget.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to the Android NDK}"
command -v cargo-ndk >/dev/null || cargo install cargo-ndk
rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android
cargo ndk -t arm64-v8a -t armeabi-v7a -t x86_64 -o android/src/main/jniLibs \
  build -p satchel-core --lib --profile mobile --features mobile
echo "build-android: android/src/main/jniLibs/{arm64-v8a,armeabi-v7a,x86_64}/libsatchel_core.so"
