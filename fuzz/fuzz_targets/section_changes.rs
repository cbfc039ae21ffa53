#![no_main]
//! Fuzz target `section_changes`: `satchel_core::fuzzing::section_changes` (one entry point shared with the
//! `fuzz_regressions` test; see its documentation for what it decodes).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = satchel_core::fuzzing::section_changes(data);
});
