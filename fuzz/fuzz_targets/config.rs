//! Fuzz target `config`: see `dprox_fuzz_checks::config` for the property it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dprox_fuzz_checks::config(data));
