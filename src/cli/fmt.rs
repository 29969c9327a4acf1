//! `cnnc fmt`: print, check or rewrite a file in the canonical layout.

use super::{ColorChoice, UsageError, print_diagnostics, read_source, use_color};
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn cmd_fmt(model: &Path, check: bool, write: bool) -> Result<ExitCode, UsageError> {
    let shown = model.display().to_string();
    let source = match read_source(model)? {
        Ok(s) => s,
        Err(d) => {
            eprint!("{}", d.render(&shown, "", use_color(ColorChoice::Auto)));
            return Ok(ExitCode::from(1));
        }
    };
    let formatted = match cnnc::format_source(&source) {
        Ok(f) => f,
        Err(diags) => {
            print_diagnostics(model, &source, &diags, use_color(ColorChoice::Auto));
            return Ok(ExitCode::from(1));
        }
    };
    if check {
        if formatted != source {
            eprintln!("{shown} is not formatted (run `cnnc fmt --write {shown}`)");
            return Ok(ExitCode::from(1));
        }
    } else if write {
        if formatted != source {
            // Through a temporary file renamed over the source: a full disk leaves it whole.
            cnnc::write_atomic(model, formatted.as_bytes(), true, false).map_err(|e| UsageError(e.to_string()))?;
        }
    } else {
        print!("{formatted}");
    }
    Ok(ExitCode::SUCCESS)
}
