//! The weight tensors a network needs: canonical name, shape and kind, in file order. This order
//! is the network's layer order and, within a layer, PyTorch's (conv/fc: weight, bias; bn:
//! weight, bias, running_mean, running_var), so torchvision state dicts map by position. Each op
//! declares its own tensors (`LayerOp::weights`); the parameter counts come from the same list.

use crate::ir::geometry::Shape;
use crate::ir::graph::{Network, NodeId};
use crate::ops::ParamKind;
use serde::Serialize;

/// One weight tensor of a network.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamSpec {
    /// The canonical name: `conv1.1.weight`.
    pub name: String,
    /// Its shape, in PyTorch's layout.
    pub shape: Vec<usize>,
    /// Weight, bias or running statistic.
    pub kind: ParamKind,
    /// The node it belongs to.
    #[serde(skip)]
    pub node: NodeId,
}

impl ParamSpec {
    /// The number of values.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every tensor of `net`, given its (batch-1) shapes.
pub fn param_specs(net: &Network, shapes: &[Shape]) -> Vec<ParamSpec> {
    let mut out = Vec::new();
    for (id, node) in net.nodes.iter().enumerate() {
        let inputs: Vec<Shape> = node.inputs.iter().map(|&i| shapes[i]).collect();
        for w in node.op.def().weights(&inputs) {
            out.push(ParamSpec {
                name: format!("{}.{}", node.name, w.kind.suffix()),
                shape: w.shape.into_iter().map(|d| d as usize).collect(),
                kind: w.kind,
                node: id,
            });
        }
    }
    out
}
