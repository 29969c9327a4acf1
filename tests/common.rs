//! Helpers shared by the integration tests: paths, running the checker and the binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example(name: &str) -> PathBuf {
    repo().join("examples").join(name)
}

/// Every `.cnn` file directly under `dir`, sorted.
pub fn cnn_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo().join(dir))
        .expect("directory exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cnn"))
        .collect();
    files.sort();
    files
}

pub fn cnnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cnnc")).args(args).current_dir(repo()).output().expect("cnnc runs")
}

pub fn check_json(args: &[&str]) -> (serde_json::Value, i32) {
    let mut full = vec!["check", "--json"];
    full.extend_from_slice(args);
    let out = cnnc(&full);
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("cnnc check --json {args:?} printed invalid JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
    });
    (value, out.status.code().unwrap_or(-1))
}
