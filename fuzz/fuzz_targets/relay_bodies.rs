#![no_main]
//! Fuzz target `relay_bodies`: `satchel_sync_server::api::fuzzing::relay_bodies` (one entry point shared with the
//! `fuzz_regressions` test; see its documentation for what it decodes).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = satchel_sync_server::api::fuzzing::relay_bodies(data);
});
