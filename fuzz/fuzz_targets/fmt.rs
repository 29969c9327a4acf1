//! Fuzz target `fmt`: see `cnnc::fuzzing::fmt` for the property it checks.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cnnc::fuzzing::fmt(data));
