//! Helpers shared by the integration tests: paths, running the checker and the binary.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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
    cnnc_env(args, &[])
}

/// `cnnc` with extra environment variables.
pub fn cnnc_env(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cnnc"));
    cmd.args(args).current_dir(repo());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("cnnc runs")
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

/// How a child process is confined.
#[derive(Clone, Copy)]
pub struct Confine {
    pub address_space: u64,
    pub file_size: Option<u64>,
    pub umask: Option<u32>,
}

pub const TWO_GIB: Confine = Confine { address_space: 2 << 30, file_size: None, umask: None };

/// Runs cnnc confined; panics if it runs past the watchdog.
pub fn confined(args: &[&str], limits: Confine) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cnnc"));
    cmd.args(args).current_dir(repo()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (setrlimit, umask) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let set = |resource, bytes: u64| {
                let lim = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
                libc::setrlimit(resource, &lim);
            };
            set(libc::RLIMIT_AS, limits.address_space);
            if let Some(f) = limits.file_size {
                set(libc::RLIMIT_FSIZE, f);
            }
            if let Some(m) = limits.umask {
                libc::umask(m as libc::mode_t);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("cnnc starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("waits").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cnnc {args:?} ran for more than 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
