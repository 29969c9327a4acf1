//! The `cnnc` command line. Exit codes: 0 success, 1 errors in the model or its inputs, 2 usage
//! or I/O errors.

use clap::{Parser, Subcommand, ValueEnum};
use cnnc::check::{check_source, parse_input_dims};
use cnnc::diag::Diagnostic;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cnnc",
    version,
    about = "A compiler for a compact language that describes convolutional networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Parse, infer every shape, lint, and print per-layer costs.
    Check {
        /// The .cnn file.
        model: PathBuf,
        /// Check at this input size instead of the declared one (CxHxW).
        #[arg(long, value_name = "CxHxW")]
        input: Option<String>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Treat warnings as errors (exit 1).
        #[arg(long)]
        deny_warnings: bool,
        #[arg(long, value_enum, default_value = "auto")]
        color: ColorChoice,
    },
}

/// A failure that is not about the model: a missing file, a bad flag value.
struct UsageError(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check {
            model,
            input,
            json,
            deny_warnings,
            color,
        } => cmd_check(&model, input, json, deny_warnings, color),
    };
    match result {
        Ok(code) => code,
        Err(UsageError(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn read_source(path: &Path) -> Result<Result<String, Diagnostic>, UsageError> {
    let bytes = std::fs::read(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    Ok(String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Diagnostic::error(
            "E0001",
            cnnc::ast::Span::new(at, at),
            format!("the file is not valid UTF-8 (byte {at})"),
        )
    }))
}

fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    }
}

fn cmd_check(
    model: &Path,
    input: Option<String>,
    json: bool,
    deny_warnings: bool,
    color: ColorChoice,
) -> Result<ExitCode, UsageError> {
    let input = input
        .map(|s| parse_input_dims(&s))
        .transpose()
        .map_err(UsageError)?;
    let display_name = model.display().to_string();
    let source = match read_source(model)? {
        Ok(s) => s,
        Err(d) => {
            eprint!("{}", d.render(&display_name, "", use_color(color)));
            return Ok(ExitCode::from(1));
        }
    };
    let stem = model
        .file_stem()
        .map_or("network".into(), |s| s.to_string_lossy().into_owned());
    let report = check_source(&source, &stem, input);
    let failed = report.errors() > 0 || (deny_warnings && report.warnings() > 0);
    if json {
        let value = cnnc::report::to_json(&report, &source);
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        let color = use_color(color);
        for d in &report.diagnostics {
            eprint!("{}", d.render(&display_name, &source, color));
        }
        if let Some(checked) = &report.checked.as_ref().filter(|_| report.errors() == 0) {
            print!("{}", cnnc::report::render_table(checked));
        }
        let (e, w) = (report.errors(), report.warnings());
        if e > 0 || w > 0 {
            let plural =
                |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            eprintln!(
                "{}: {}, {}",
                display_name,
                plural(e, "error"),
                plural(w, "warning")
            );
        }
    }
    Ok(ExitCode::from(u8::from(failed)))
}
