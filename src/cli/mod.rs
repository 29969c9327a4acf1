//! The commands: one file each, over the library's API. Shared here: reading a model, printing
//! diagnostics, and mapping failures to exit codes.

pub(crate) mod bench;
pub(crate) mod check;
pub(crate) mod compare;
pub(crate) mod compile;
pub(crate) mod explain;
pub(crate) mod fmt;
pub(crate) mod graph;
pub(crate) mod kernels;
pub(crate) mod params;
pub(crate) mod run;

use clap::ValueEnum;
use cnnc::{Code, Diagnostic, Model, RunError, Span};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// A failure that is not about the model: a missing file, a bad flag value.
pub(crate) struct UsageError(pub(crate) String);

pub(crate) fn read_source(path: &Path) -> Result<Result<String, Diagnostic>, UsageError> {
    let limit = cnnc::MAX_SOURCE_BYTES as u64;
    let bytes = match cnnc::read_limited(path, limit) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            let message = format!("the file is larger than {limit} bytes, the most a .cnn file may be");
            return Ok(Err(Diagnostic::error(Code::Syntax, Span::new(0, 0), message)));
        }
        Err(e) => return Err(UsageError(format!("cannot read {}: {e}", path.display()))),
    };
    Ok(String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Diagnostic::error(Code::Syntax, Span::new(at, at), format!("the file is not valid UTF-8 (byte {at})"))
    }))
}

pub(crate) fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

pub(crate) fn print_diagnostics(path: &Path, source: &str, diagnostics: &[Diagnostic], color: bool) {
    let shown = path.display().to_string();
    for d in diagnostics {
        eprint!("{}", d.render(&shown, source, color));
    }
}

/// Prints a run-time error (model diagnostics rendered against the source) and maps it to exit 1.
pub(crate) fn report_run(result: Result<(), RunError>, color: ColorChoice) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Model { path, source_text, diagnostics }) => {
            print_diagnostics(&path, &source_text, &diagnostics, use_color(color));
            eprintln!("error: {} has errors; see `cnnc check`", path.display());
            ExitCode::from(1)
        }
        Err(RunError::WeightShape { path, source_text, diagnostic, .. }) => {
            print_diagnostics(&path, &source_text, &[*diagnostic], use_color(color));
            ExitCode::from(1)
        }
        Err(e) => {
            match e.code() {
                Some(code) => eprintln!("error[{code}]: {e}"),
                None => eprintln!("error: {e}"),
            }
            ExitCode::from(1)
        }
    }
}

pub(crate) fn load_model(path: &Path, input: Option<cnnc::Input>) -> Result<Model, RunError> {
    let (model, warnings) = cnnc::load_model(path, input)?;
    if !warnings.is_empty() {
        print_diagnostics(path, &model.source, &warnings, use_color(ColorChoice::Auto));
    }
    Ok(model)
}
