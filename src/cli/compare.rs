//! `cnnc compare`: networks side by side.

use super::load_model;
use cnnc::RunError;
use std::path::PathBuf;

pub(crate) fn cmd_compare(models: &[PathBuf], json: bool) -> Result<(), RunError> {
    let mut summaries = Vec::new();
    for path in models {
        let model = load_model(path, None)?;
        summaries.push(cnnc::summarize(&model.checked, &path.display().to_string()));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&cnnc::comparison_json(&summaries)).unwrap_or_default());
    } else {
        print!("{}", cnnc::render_comparison(&summaries));
    }
    Ok(())
}
