//! Fuzz target `stream`: see `dprox_fuzz_checks::stream` for the property it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dprox_fuzz_checks::stream(data));
