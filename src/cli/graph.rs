//! `cnnc graph`: the network as SVG or DOT, by the output's extension.

use super::load_model;
use cnnc::RunError;
use std::path::Path;

pub(crate) fn cmd_graph(
    model_path: &Path,
    output: &Path,
    collapse: bool,
    input: Option<cnnc::Input>,
    force: bool,
) -> Result<(), RunError> {
    let model = load_model(model_path, input)?;
    let text = match output.extension().and_then(|e| e.to_str()) {
        Some("svg") => cnnc::graph_svg(&cnnc::layout_graph(&model.checked, collapse)),
        Some("dot") => cnnc::graph_dot(&model.checked, collapse),
        _ => return Err(RunError::Weights(format!("{}: the output must end in .svg or .dot", output.display()))),
    };
    cnnc::write_atomic(output, text.as_bytes(), force, true)?;
    eprintln!("wrote {}", output.display());
    Ok(())
}
