#!/usr/bin/env bash
# Builds ios/SatchelCoreFFI.xcframework (static libsatchel_core for
# aarch64-apple-ios, aarch64-apple-ios-sim and x86_64-apple-ios, with the
# generated header and module map). Runs on a Mac with Xcode and rustup;
# not on this project's Linux CI. Profile `mobile` (workspace Cargo.toml)
# and feature `mobile` (core/Cargo.toml), as for Android.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(uname)" = Darwin ] || { echo "build-ios: needs macOS with Xcode" >&2; exit 1; }
target_dir=${CARGO_TARGET_DIR:-target}
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
rustup target add "${targets[@]}"
for t in "${targets[@]}"; do
  cargo build -p satchel-core --lib --profile mobile --features mobile --target "$t"
done
headers=$(mktemp -d)
cp ios/Sources/SatchelCoreFFI/include/SatchelCoreFFI.h ios/Sources/SatchelCoreFFI/include/module.modulemap "$headers/"
# One simulator library for both simulator architectures.
mkdir -p "$target_dir/ios-sim"
lipo -create "$target_dir/aarch64-apple-ios-sim/mobile/libsatchel_core.a" \
  "$target_dir/x86_64-apple-ios/mobile/libsatchel_core.a" -output "$target_dir/ios-sim/libsatchel_core.a"
rm -rf ios/SatchelCoreFFI.xcframework
xcodebuild -create-xcframework \
  -library "$target_dir/aarch64-apple-ios/mobile/libsatchel_core.a" -headers "$headers" \
  -library "$target_dir/ios-sim/libsatchel_core.a" -headers "$headers" \
  -output ios/SatchelCoreFFI.xcframework
rm -rf "$headers"
echo "build-ios: ios/SatchelCoreFFI.xcframework"
