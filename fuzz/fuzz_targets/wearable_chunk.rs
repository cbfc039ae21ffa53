#![no_main]
//! Fuzz target `wearable_chunk`: `satchel_core::fuzzing::wearable_chunk` (one entry point shared with the
//! `fuzz_regressions` test; see its documentation for what it decodes).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = satchel_core::fuzzing::wearable_chunk(data);
});
