//! Fuzz target `wire`: see `dprox_fuzz_checks::wire` for the property it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dprox_fuzz_checks::wire(data));
