//! Every input a fuzz target once failed on, run through the same property (`cnnc::fuzzing`):
//! `tests/fixtures/fuzz/TARGET/*`. `fuzz/run.sh` explains how inputs get here.

mod common;
use common::*;

#[test]
fn every_fuzz_regression_input_holds_its_property() {
    let targets: [(&str, fn(&[u8])); 5] = [
        ("check", cnnc::fuzzing::check),
        ("fmt", cnnc::fuzzing::fmt),
        ("safetensors", cnnc::fuzzing::safetensors),
        ("npy", cnnc::fuzzing::npy),
        ("image", cnnc::fuzzing::image),
    ];
    let mut seen = 0;
    for (target, property) in targets {
        let dir = repo().join("tests/fixtures/fuzz").join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            property(&std::fs::read(&path).unwrap());
            seen += 1;
        }
    }
    assert!(seen >= 2, "the regression inputs are found");
}

#[test]
fn a_npy_header_claiming_gigabytes_is_refused_without_allocating_them() {
    let npy = repo().join("tests/fixtures/fuzz/npy/header_length_4gib.npy");
    let out = confined(&["run", "examples/googlenet.cnn", npy.to_str().unwrap()], TWO_GIB);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("header claims"), "{}", String::from_utf8_lossy(&out.stderr));
}
