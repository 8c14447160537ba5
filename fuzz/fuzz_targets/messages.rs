//! Fuzz target `messages`: see `dprox_fuzz_checks::messages` for the property it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dprox_fuzz_checks::messages(data));
