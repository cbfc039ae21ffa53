#!/usr/bin/env bash
# Builds ios/SatchelCoreFFI.xcframework (static libsatchel_core for
# aarch64-apple-ios, aarch64-apple-ios-sim and x86_64-apple-ios, with the
# generated header and module map). Runs on a Mac with Xcode and rustup;
# not on this project's Linux CI.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(uname)" = Darwin ] || { echo "build-ios: needs macOS with Xcode" >&2; exit 1; }
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
rustup target add "${targets[@]}"
for t in "${targets[@]}"; do
  cargo build -p satchel-core --lib --release --target "$t"
done
headers=$(mktemp -d)
cp ios/Sources/SatchelCoreFFI/include/SatchelCoreFFI.h ios/Sources/SatchelCoreFFI/include/module.modulemap "$headers/"
# One simulator library for both simulator architectures.
mkdir -p target/ios-sim
lipo -create target/aarch64-apple-ios-sim/release/libsatchel_core.a \
  target/x86_64-apple-ios/release/libsatchel_core.a -output target/ios-sim/libsatchel_core.a
rm -rf ios/SatchelCoreFFI.xcframework
xcodebuild -create-xcframework \
  -library target/aarch64-apple-ios/release/libsatchel_core.a -headers "$headers" \
  -library target/ios-sim/libsatchel_core.a -headers "$headers" \
  -output ios/SatchelCoreFFI.xcframework
rm -rf "$headers"
echo "build-ios: ios/SatchelCoreFFI.xcframework"
