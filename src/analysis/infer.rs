//! Shape inference over the layer graph: one output shape per node, or `None` where an earlier
//! error makes the shape unknowable (which silences follow-on errors downstream). Each op's
//! shape rule is its own (`LayerOp::infer`); this pass walks the graph and bounds the sizes.

use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::{MAX_ELEMENTS, Shape};
use crate::ir::graph::{Input, Network, Node};
use crate::ops::{Category, Flatten, Op};

/// The shape of every node.
#[derive(Clone, Debug)]
pub(crate) struct Shapes {
    pub(crate) out: Vec<Option<Shape>>,
    /// For flat tensors that come from `flatten`: the map they were flattened from.
    pub(crate) unflat: Vec<Option<Shape>>,
}

impl Shapes {
    /// All shapes, when inference succeeded everywhere.
    pub(crate) fn complete(&self) -> Option<Vec<Shape>> {
        self.out.iter().copied().collect()
    }
}

/// Attaches the block call sites of `node` to a diagnostic about it.
pub(crate) fn at_node(mut d: Diagnostic, node: &Node) -> Diagnostic {
    for (span, text) in &node.origin.call_sites {
        d = d.with_secondary(*span, text.clone());
    }
    d
}

pub(crate) fn infer_shapes(net: &Network, input: Input) -> (Shapes, Vec<Diagnostic>) {
    let mut shapes = Shapes { out: Vec::with_capacity(net.nodes.len()), unflat: Vec::new() };
    let mut diags = Vec::new();
    for node in &net.nodes {
        let ins: Option<Vec<Shape>> = node.inputs.iter().map(|&i| shapes.out[i]).collect();
        let unflat_in = node.inputs.first().and_then(|&i| shapes.unflat[i]);
        let (out, unflat) = match ins {
            None => (None, None),
            Some(ins) => match node.op.def().infer(node, &ins, input) {
                Ok(s) => {
                    let unflat = unflat_of(&node.op, &ins, unflat_in);
                    match s.elements() {
                        Some(n) if n <= MAX_ELEMENTS => (Some(s), unflat),
                        _ => {
                            diags.push(at_node(too_large(node, &s), node));
                            (None, None)
                        }
                    }
                }
                Err(d) => {
                    if let Some(d) = d {
                        diags.push(at_node(d, node));
                    }
                    (None, None)
                }
            },
        };
        shapes.out.push(out);
        shapes.unflat.push(unflat);
    }
    (shapes, diags)
}

/// The map a flat output was flattened from: set by flatten, kept by the ops that pass values
/// through unchanged in shape (views and in-place ops such as relu, bn, softmax).
fn unflat_of(op: &Op, ins: &[Shape], unflat_in: Option<Shape>) -> Option<Shape> {
    if *op == Op::Flatten(Flatten) {
        return match ins[0] {
            m @ Shape::Map { .. } => Some(m),
            Shape::Flat { .. } => unflat_in,
        };
    }
    let def = op.def();
    let passes_through = def.traits().in_place || def.traits().view;
    if passes_through { unflat_in } else { None }
}

fn too_large(node: &Node, s: &Shape) -> Diagnostic {
    Diagnostic::error(
        Code::TooLarge,
        node.origin.span,
        format!("{} would produce a {s} tensor, more than {MAX_ELEMENTS} values", node.op.keyword()),
    )
    .with_label("absurdly large")
}

/// Weights are sized by the declared input. Under `--input`, a layer whose weights would change
/// shape cannot use them: an fc whose input length changes, or a conv or bn whose input channels
/// change. Each is reported naming both sizes.
pub(crate) fn check_fc_inputs(net: &Network, declared: &Shapes, actual: &Shapes) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for node in &net.nodes {
        let Some(&src) = node.inputs.first() else {
            continue;
        };
        let (Some(exp), Some(got)) = (declared.out[src], actual.out[src]) else {
            continue;
        };
        let def = node.op.def();
        let ins = |shapes: &Shapes| node.inputs.iter().map(|&i| shapes.out[i]).collect::<Option<Vec<_>>>();
        let (Some(exp_ins), Some(got_ins)) = (ins(declared), ins(actual)) else {
            continue;
        };
        if def.weights(&exp_ins) == def.weights(&got_ins) {
            continue;
        }
        let d = if def.traits().category == Category::Fc {
            let describe = |s: Shape, unflat: Option<Shape>, what: &str| match unflat {
                Some(m) => format!("{}{what} ({m})", s.channels()),
                None => format!("{}{what}", s.channels()),
            };
            Diagnostic::error(
                Code::WeightsReshaped,
                node.origin.span,
                format!(
                    "fc expects {} but receives {}",
                    describe(exp, declared.unflat[src], " inputs"),
                    describe(got, actual.unflat[src], "")
                ),
            )
            .with_label(format!("sized for the declared input {}", net.input))
            .with_help("put `gap` (or `adaptive_avgpool`) before flatten so the network accepts any input size")
        } else {
            Diagnostic::error(
                Code::WeightsReshaped,
                node.origin.span,
                format!(
                    "{} expects {} input channels but receives {}",
                    node.op.keyword(),
                    exp.channels(),
                    got.channels()
                ),
            )
            .with_label(format!("sized for the declared input {}", net.input))
            .with_help("`--input` may change the height and width, not the channels")
        };
        diags.push(at_node(d, node));
    }
    diags
}
