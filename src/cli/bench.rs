//! `cnnc bench`: forward-pass timing, per layer and whole.

use super::load_model;
use cnnc::{Backend, BenchOptions, Limits, RunError, WeightsSource};
use std::path::Path;

pub(crate) fn cmd_bench(
    model_path: &Path,
    weights: Option<&Path>,
    options: BenchOptions,
    backend: Backend,
    json: bool,
    limits: &Limits,
) -> Result<(), RunError> {
    let model = load_model(model_path, None)?;
    let (weights, source, _) = cnnc::resolve_weights(&model, weights, cnnc::usage(backend, options.batch), limits)?;
    if let WeightsSource::Random { seed } = source {
        eprintln!("note: timing with random He-initialised weights (seed {seed})");
    }
    let report = cnnc::bench(&model, weights, options, backend)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json()).unwrap_or_default());
    } else {
        print!("{}", report.render());
    }
    Ok(())
}
