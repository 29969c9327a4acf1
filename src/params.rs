//! The weight tensors a network needs: canonical name, shape and kind, in file order. This order
//! is the network's layer order and, within a layer, PyTorch's (conv/fc: weight, bias; bn:
//! weight, bias, running_mean, running_var), so torchvision state dicts map by position.

use crate::geometry::Shape;
use crate::graph::{Network, NodeId, Op};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    Weight,
    Bias,
    RunningMean,
    RunningVar,
}

impl ParamKind {
    pub fn suffix(self) -> &'static str {
        match self {
            ParamKind::Weight => "weight",
            ParamKind::Bias => "bias",
            ParamKind::RunningMean => "running_mean",
            ParamKind::RunningVar => "running_var",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
    #[serde(skip)]
    pub node: NodeId,
}

impl ParamSpec {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every tensor of `net`, given its (batch-1) shapes.
pub fn param_specs(net: &Network, shapes: &[Shape]) -> Vec<ParamSpec> {
    let mut out = Vec::new();
    for (id, node) in net.nodes.iter().enumerate() {
        let mut push = |kind: ParamKind, shape: Vec<u64>| {
            out.push(ParamSpec {
                name: format!("{}.{}", node.name, kind.suffix()),
                shape: shape.into_iter().map(|d| d as usize).collect(),
                kind,
                node: id,
            })
        };
        let input = node.inputs.first().map(|&i| shapes[i]);
        match (&node.op, input) {
            (Op::Conv(c), Some(inp)) => {
                push(ParamKind::Weight, vec![c.out_channels, inp.channels() / c.groups, c.kernel[0], c.kernel[1]]);
                if c.bias {
                    push(ParamKind::Bias, vec![c.out_channels]);
                }
            }
            (Op::Fc(f), Some(inp)) => {
                push(ParamKind::Weight, vec![f.out, inp.channels()]);
                if f.bias {
                    push(ParamKind::Bias, vec![f.out]);
                }
            }
            (Op::BatchNorm { .. }, _) => {
                let c = shapes[id].channels();
                for kind in [ParamKind::Weight, ParamKind::Bias, ParamKind::RunningMean, ParamKind::RunningVar] {
                    push(kind, vec![c]);
                }
            }
            _ => {}
        }
    }
    out
}
