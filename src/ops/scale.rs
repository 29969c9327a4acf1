//! `scale`: a learned per-channel multiplier (ConvNeXt's layer scale), weight [C]. The JIT folds
//! it into the preceding convolution's weights, as it folds batch norm.

use super::args::OpSpec;
use super::support::one;
use super::{Category, Fusion, LayerOp, Op, ParamKind, Traits, WeightDecl, Window, weight};
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use ndarray::Axis;

pub(super) const SPECS: &[OpSpec] = &[OpSpec {
    name: "scale",
    positional: &[],
    required: 0,
    options: &[],
    example: "scale",
    build: |_, _| Some(Op::Scale(Scale)),
}];

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Scale;

impl LayerOp for Scale {
    fn keyword(&self) -> &'static str {
        "scale"
    }

    fn infer(&self, _: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        Ok(one(inputs, "scale"))
    }

    fn weights(&self, inputs: &[Shape]) -> Vec<WeightDecl> {
        vec![weight(ParamKind::Weight, vec![one(inputs, "scale").channels()])]
    }

    fn macs(&self, _: &[Shape], _: Shape) -> Option<u64> {
        Some(0)
    }

    fn window(&self, _: &[Shape]) -> Window {
        Window::Point
    }

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Fold
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Other, in_place: true, view: false, activation: None, factor: false }
    }

    /// `x * weight` per channel (feature).
    fn eval(&self, inputs: &[&Tensor], weights: &[&[f32]]) -> Tensor {
        let w = weights[0];
        match inputs[0] {
            Tensor::Map(a) => {
                let mut out = a.clone();
                for (c, mut plane) in out.axis_iter_mut(Axis(1)).enumerate() {
                    plane.mapv_inplace(|v| v * w[c]);
                }
                Tensor::Map(out)
            }
            Tensor::Flat(a) => {
                let mut out = a.clone();
                for (c, mut col) in out.axis_iter_mut(Axis(1)).enumerate() {
                    col.mapv_inplace(|v| v * w[c]);
                }
                Tensor::Flat(out)
            }
        }
    }
}
