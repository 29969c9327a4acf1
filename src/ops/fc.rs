//! `fc N`: a fully connected layer on a vector, PyTorch's `Linear` (+ `ReLU`).

use super::args::{OpSpec, Takes, bias_flag, int_in_range, opt};
use super::support::{one, whole_map};
use super::{Activation, Category, Fusion, LayerOp, Op, ParamKind, Traits, WeightDecl, Window, weight};
use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use ndarray::Array2;

pub(super) const SPECS: &[OpSpec] = &[OpSpec {
    name: "fc",
    positional: &[("output features", Takes::Int)],
    required: 1,
    options: &[opt("bias", Takes::Flag), opt("nobias", Takes::Flag), opt("relu", Takes::Flag)],
    example: "fc 4096 relu",
    build: |p, errors| {
        let out = p.pos(0).and_then(|v| int_in_range("output features", "fc", v, 1, errors));
        let bias = bias_flag(p, errors);
        out.map(|out| Op::Fc(Fc { out, bias, relu: p.flag("relu") }))
    },
}];

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Fc {
    pub(crate) out: u64,
    pub(crate) bias: bool,
    pub(crate) relu: bool,
}

impl LayerOp for Fc {
    fn keyword(&self) -> &'static str {
        "fc"
    }

    fn describe(&self) -> String {
        format!("fc {}{}", self.out, if self.relu { " +relu" } else { "" })
    }

    fn infer(&self, at: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        match one(inputs, "fc") {
            Shape::Flat { .. } => Ok(Shape::Flat { n: self.out }),
            s @ Shape::Map { .. } => Err(Some(
                Diagnostic::error(
                    Code::FcOnMap,
                    at.origin.span,
                    format!("fc expects a flat vector but receives a {s} feature map"),
                )
                .with_label("input is not flat")
                .with_help(format!(
                    "insert `flatten` before fc; for a Linear applied at every pixel (ConvNeXt's MLP), write `conv 1x1 {}`",
                    self.out
                )),
            )),
        }
    }

    fn weights(&self, inputs: &[Shape]) -> Vec<WeightDecl> {
        let mut w = vec![weight(ParamKind::Weight, vec![self.out, one(inputs, "fc").channels()])];
        if self.bias {
            w.push(weight(ParamKind::Bias, vec![self.out]));
        }
        w
    }

    fn macs(&self, inputs: &[Shape], _: Shape) -> Option<u64> {
        one(inputs, "fc").channels().checked_mul(self.out)
    }

    fn window(&self, inputs: &[Shape]) -> Window {
        whole_map(inputs)
    }

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Anchor { spatial: false }
    }

    fn traits(&self) -> Traits {
        Traits {
            category: Category::Fc,
            in_place: false,
            view: false,
            activation: self.relu.then_some(Activation::Relu),
            factor: false,
        }
    }

    fn eval(&self, inputs: &[&Tensor], weights: &[&[f32]]) -> Tensor {
        let bias = self.bias.then(|| weights[1]);
        Tensor::Flat(linear(inputs[0].flat("fc"), weights[0], bias, self))
    }
}

/// `torch.nn.Linear`: weight [out, in], y = x W^T + b.
fn linear(x: &Array2<f32>, weight: &[f32], bias: Option<&[f32]>, f: &Fc) -> Array2<f32> {
    let (n, inp) = x.dim();
    let out_f = f.out as usize;
    let mut out = Array2::<f32>::zeros((n, out_f));
    for b in 0..n {
        for o in 0..out_f {
            let mut acc = bias.map_or(0.0, |b| b[o]);
            for i in 0..inp {
                acc += weight[o * inp + i] * x[[b, i]];
            }
            out[[b, o]] = if f.relu { acc.max(0.0) } else { acc };
        }
    }
    out
}
