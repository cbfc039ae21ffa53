//! Link settings for the phone library (docs/mobile.md "Size"), for the
//! cdylib only (the rlib and the iOS staticlib, which the app links, are
//! unchanged) and only in optimised builds (debug builds link as before):
//! - fold identical functions (`--icf=all`; LLD, which both rustc on
//!   x86_64 Linux and the Android NDK link with);
//! - merge string constants that are the tail of another (`-O2`, 4 KB);
//! - pack the relative relocations: RELR on Linux (glibc 2.36 or later
//!   loads it), Android's packed format on Android (API 23 or later; the
//!   library's minSdk is 26).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let optimised = std::env::var("OPT_LEVEL").is_ok_and(|level| level != "0");
    if !optimised {
        return;
    }
    match os.as_str() {
        "linux" => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,--icf=all");
            println!("cargo:rustc-cdylib-link-arg=-Wl,-O2");
            println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
        }
        "android" => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,--icf=all");
            println!("cargo:rustc-cdylib-link-arg=-Wl,-O2");
            println!("cargo:rustc-cdylib-link-arg=-Wl,--pack-dyn-relocs=android");
        }
        _ => {}
    }
}
