//! `cnnc check`: diagnostics, then the per-layer table or the JSON object.

use super::{ColorChoice, UsageError, print_diagnostics, read_source, use_color};
use cnnc::{check_source, parse_input_dims};
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn cmd_check(
    model: &Path,
    input: Option<String>,
    json: bool,
    deny_warnings: bool,
    color: ColorChoice,
) -> Result<ExitCode, UsageError> {
    let input = input.map(|s| parse_input_dims(&s)).transpose().map_err(UsageError)?;
    let display_name = model.display().to_string();
    let source = match read_source(model)? {
        Ok(s) => s,
        Err(d) => {
            eprint!("{}", d.render(&display_name, "", use_color(color)));
            return Ok(ExitCode::from(1));
        }
    };
    let stem = model.file_stem().map_or("network".into(), |s| s.to_string_lossy().into_owned());
    let report = check_source(&source, &stem, input);
    let failed = report.errors() > 0 || (deny_warnings && report.warnings() > 0);
    if json {
        let value = cnnc::report_json(&report, &source);
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        print_diagnostics(model, &source, &report.diagnostics, use_color(color));
        if let Some(checked) = &report.checked.as_ref().filter(|_| report.errors() == 0) {
            print!("{}", cnnc::render_table(checked));
        }
        let (e, w) = (report.errors(), report.warnings());
        if e > 0 || w > 0 {
            let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            eprintln!("{}: {}, {}", display_name, plural(e, "error"), plural(w, "warning"));
        }
    }
    Ok(ExitCode::from(u8::from(failed)))
}
