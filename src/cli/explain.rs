//! `cnnc explain CODE`: what a diagnostic code means, with an example and the usual fix.

use super::UsageError;
use cnnc::Code;
use std::process::ExitCode;

pub(crate) fn cmd_explain(code: &str) -> Result<ExitCode, UsageError> {
    let Some(c) = Code::parse(code) else {
        let known: Vec<&str> = Code::all().map(Code::as_str).collect();
        return Err(UsageError(format!("`{code}` is not a cnnc diagnostic code; the codes are {}", known.join(", "))));
    };
    println!("{c}: {}\n\n{}", c.title(), c.explanation());
    Ok(ExitCode::SUCCESS)
}
