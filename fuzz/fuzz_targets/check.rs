//! Fuzz target `check`: see `cnnc::fuzzing::check` for the property it checks.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cnnc::fuzzing::check(data));
