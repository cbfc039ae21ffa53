//! The uniffi bindings generator for satchel-core's mobile API
//! (`core/src/api`). Run by `scripts/bindings-mobile.sh`:
//! `uniffi-bindgen generate --library target/debug/libsatchel_core.so --language kotlin --out-dir ...`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
