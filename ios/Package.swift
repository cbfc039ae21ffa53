// swift-tools-version:5.9
// The Satchel Swift package: the Rust core as an XCFramework (built by
// ../scripts/build-ios.sh into SatchelCoreFFI.xcframework), its generated
// uniffi bindings (Sources/SatchelCore, regenerated and diffed by CI), and
// the Swift layer apps use (Sources/Satchel: KeychainSecretStore, async
// wrappers, AsyncThrowingStream of changes).
import PackageDescription

let package = Package(
    name: "Satchel",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "Satchel", targets: ["Satchel"]),
    ],
    targets: [
        .binaryTarget(name: "SatchelCoreFFI", path: "SatchelCoreFFI.xcframework"),
        .target(name: "SatchelCore", dependencies: ["SatchelCoreFFI"], path: "Sources/SatchelCore"),
        .target(name: "Satchel", dependencies: ["SatchelCore"], path: "Sources/Satchel"),
        .testTarget(name: "SatchelTests", dependencies: ["Satchel"], path: "Tests/SatchelTests"),
    ]
)
