//! `cnnc params` (the weight tensors a network needs) and `cnnc init` (a seeded He
//! initialisation of them).

use super::load_model;
use cnnc::{Limits, RunError, Usage};
use std::collections::HashMap;
use std::path::Path;

pub(crate) fn cmd_params(model_path: &Path, json: bool) -> Result<(), RunError> {
    let model = load_model(model_path, None)?;
    let specs = model.params();
    if json {
        // One tensor per line: easy to read and to diff.
        let lines: Vec<String> =
            specs.iter().map(|s| format!("  {}", serde_json::to_string(s).unwrap_or_default())).collect();
        println!("[\n{}\n]", lines.join(",\n"));
        return Ok(());
    }
    let width = specs.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4);
    println!("{:<width$}  {:<20}  {:<12}  {:>12}", "name", "shape", "kind", "values");
    for s in &specs {
        let shape = s.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        println!(
            "{:<width$}  {:<20}  {:<12}  {:>12}",
            s.name,
            shape,
            s.kind.suffix(),
            cnnc::thousands(s.elements() as u64)
        );
    }
    let total: usize = specs.iter().map(|s| s.elements()).sum();
    println!("{} tensors, {} values", specs.len(), cnnc::thousands(total as u64));
    Ok(())
}

pub(crate) fn cmd_init(
    model_path: &Path,
    output: &Path,
    seed: u64,
    force: bool,
    limits: &Limits,
) -> Result<(), RunError> {
    let model = load_model(model_path, None)?;
    let specs = model.params();
    let bytes = specs.iter().map(|s| s.elements() as u64 * 4).sum::<u64>();
    // The tensors, and the file's bytes built from them before writing.
    cnnc::check_budget(&model.checked, Usage::WeightsOnly, bytes, limits).map_err(RunError::MemoryLimit)?;
    // Refused before the work: an existing output without --force, or a model source at all.
    cnnc::check_writable(output, force, true)?;
    let weights = cnnc::random_weights(&specs, seed);
    // One key: safetensors writes metadata in hash-map order, and the same seed must give the
    // same file byte for byte.
    let metadata = HashMap::from([(
        "generator".to_string(),
        format!("cnnc init --seed {seed} for network {} (He normal, fan-in)", model.network().name),
    )]);
    let file = cnnc::safetensors_bytes(&specs, &weights, metadata).map_err(|e| RunError::Weights(e.to_string()))?;
    cnnc::write_atomic(output, &file, force, true)?;
    eprintln!("wrote {} tensors ({}) to {}", specs.len(), cnnc::human_bytes(bytes), output.display());
    Ok(())
}
