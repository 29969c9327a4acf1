//! The checker pipeline: parse -> elaborate -> infer shapes (at the declared input, then at the
//! `--input` override) -> costs, memory plan and lints. Returns everything it could build plus
//! every diagnostic, sorted by position.

use crate::analysis::cost::{LayerCost, Totals, layer_costs, totals};
use crate::analysis::diag::{Diagnostic, sort_and_dedup};
use crate::analysis::infer::{check_fc_inputs, infer_shapes};
use crate::analysis::lint::lint;
use crate::analysis::memplan::plan_memory;
use crate::front::elaborate::elaborate;
use crate::front::parse::parse_file;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Network};

/// A network that checked cleanly (no errors), with its shapes and costs at `input`.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The layer graph.
    pub network: Network,
    /// The input size it was checked at (the declared one, or `--input`).
    pub input: Input,
    /// Each node's output shape at batch 1.
    pub shapes: Vec<Shape>,
    /// Each node's costs.
    pub costs: Vec<LayerCost>,
    /// Whole-network figures.
    pub totals: Totals,
    /// The memory plan's peak of live activations at batch 1, in bytes.
    pub peak_activation_bytes: u64,
}

/// What a check found: the network (when it has no errors) and every diagnostic, in source order.
#[derive(Debug)]
pub struct CheckReport {
    /// The checked network, if there are no errors.
    pub checked: Option<Checked>,
    /// Errors and warnings, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
}

impl CheckReport {
    /// The number of errors.
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// The number of warnings.
    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

/// Parses, elaborates, infers shapes (at `input_override` if given), costs and lints `source`.
/// `default_name` names the network when the file has no `network` line.
pub fn check_source(source: &str, default_name: &str, input_override: Option<Input>) -> CheckReport {
    let file = match parse_file(source) {
        Ok(f) => f,
        Err(diagnostics) => {
            return CheckReport { checked: None, diagnostics };
        }
    };
    let elaborated = elaborate(&file, default_name);
    let net = elaborated.network;
    let mut diags = elaborated.diagnostics;
    let (declared, declared_diags) = infer_shapes(&net, net.input);
    let declared_failed = !declared_diags.is_empty();
    diags.extend(declared_diags);
    let mut shapes = declared;
    let input = input_override.unwrap_or(net.input);
    if input != net.input && !declared_failed {
        let (actual, actual_diags) = infer_shapes(&net, input);
        diags.extend(actual_diags);
        diags.extend(check_fc_inputs(&net, &shapes, &actual));
        shapes = actual;
    }
    let mut checked = None;
    if !diags.iter().any(Diagnostic::is_error) {
        if let Some(shapes) = shapes.complete() {
            match layer_costs(&net, &shapes) {
                Ok(costs) => {
                    diags.extend(lint(&net, &shapes));
                    let totals = totals(&net, &costs);
                    let plan = plan_memory(&net, &shapes);
                    checked = Some(Checked {
                        input,
                        totals,
                        peak_activation_bytes: plan.peak_bytes,
                        shapes,
                        costs,
                        network: net,
                    });
                }
                Err(ds) => diags.extend(ds),
            }
        }
    }
    sort_and_dedup(&mut diags);
    CheckReport { checked, diagnostics: diags }
}

/// Parses `CxHxW` as given to `--input`.
pub fn parse_input_dims(text: &str) -> Result<Input, String> {
    let parts: Vec<&str> = text.split(['x', 'X']).collect();
    let nums: Option<Vec<u64>> = parts.iter().map(|p| p.trim().parse::<u64>().ok()).collect();
    match nums.as_deref() {
        Some(&[c, h, w]) if [c, h, w].iter().all(|&v| (1..=crate::ops::MAX_SIZE as u64).contains(&v)) => {
            Ok(Input { c, h, w })
        }
        _ => Err(format!("`{text}` is not CxHxW with sizes from 1 to 2^31-1 (for example 3x224x224)")),
    }
}
