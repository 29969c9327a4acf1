//! Fuzz target `image`: see `cnnc::fuzzing::image` for the property it checks.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cnnc::fuzzing::image(data));
