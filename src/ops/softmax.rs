//! `softmax`: over the features of a vector, or over the channels of each pixel of a map
//! (PyTorch's `Softmax(dim=1)`), max-subtracted for stability.

use super::args::OpSpec;
use super::support::one;
use super::{Category, Fusion, LayerOp, Op, Traits, Window};
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use ndarray::Axis;

pub(super) const SPECS: &[OpSpec] = &[OpSpec {
    name: "softmax",
    positional: &[],
    required: 0,
    options: &[],
    example: "softmax",
    build: |_, _| Some(Op::Softmax(Softmax)),
}];

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Softmax;

impl LayerOp for Softmax {
    fn keyword(&self) -> &'static str {
        "softmax"
    }

    fn infer(&self, _: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        Ok(one(inputs, "softmax"))
    }

    weightless!();

    fn window(&self, _: &[Shape]) -> Window {
        Window::Point
    }

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Alone
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Other, in_place: true, view: false, activation: None, factor: false }
    }

    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        fn normalise(mut lane: ndarray::ArrayViewMut1<f32>) {
            let m = lane.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            lane.mapv_inplace(|v| (v - m).exp());
            let s = lane.sum();
            lane.mapv_inplace(|v| v / s);
        }
        match inputs[0] {
            Tensor::Flat(a) => {
                let mut out = a.clone();
                out.rows_mut().into_iter().for_each(normalise);
                Tensor::Flat(out)
            }
            Tensor::Map(a) => {
                let mut out = a.clone();
                out.lanes_mut(Axis(1)).into_iter().for_each(normalise);
                Tensor::Map(out)
            }
        }
    }
}
