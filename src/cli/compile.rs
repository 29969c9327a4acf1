//! `cnnc compile --dump`: the JIT's IR after a pass.

use super::load_model;
use crate::DumpPass;
use cnnc::{Limits, RunError, Usage};
use std::path::Path;

pub(crate) fn cmd_compile(
    model_path: &Path,
    pass: DumpPass,
    weights: Option<&Path>,
    limits: &Limits,
) -> Result<(), RunError> {
    let model = load_model(model_path, None)?;
    let (weights, _, _) = cnnc::resolve_weights(&model, weights, Usage::Jit { batch: 1, threads: 1 }, limits)?;
    let pass = match pass {
        DumpPass::Lowered => "lowered",
        DumpPass::Scheduled => "scheduled",
        DumpPass::Clif => "clif",
    };
    print!("{}", cnnc::dump_jit(model.network(), &model.checked.shapes, weights, pass)?);
    Ok(())
}
