//! `bn`: eval-mode batch normalisation with running statistics, per channel of a map or per
//! feature of a vector (PyTorch's `BatchNorm2d` / `BatchNorm1d`). The JIT folds it into the
//! preceding convolution's weights.

use super::args::{OpSpec, Takes, float, opt, positive};
use super::support::one;
use super::{Category, Fusion, LayerOp, Op, ParamKind, Traits, WeightDecl, Window, weight};
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use ndarray::Axis;

pub(super) const SPECS: &[OpSpec] = &[OpSpec {
    name: "bn",
    positional: &[],
    required: 0,
    options: &[opt("eps", Takes::Float)],
    example: "bn eps 0.001",
    build: |p, errors| {
        let eps = match p.option("eps") {
            Some(v) => float("eps", "bn", v, errors).filter(|&e| positive(e, "eps", v.span, errors)),
            None => Some(1e-5),
        };
        eps.map(|eps| Op::BatchNorm(BatchNorm { eps }))
    },
}];

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct BatchNorm {
    pub(crate) eps: f64,
}

impl LayerOp for BatchNorm {
    fn keyword(&self) -> &'static str {
        "bn"
    }

    fn infer(&self, _: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        Ok(one(inputs, "bn"))
    }

    /// gamma, beta (parameters), running mean and variance (buffers).
    fn weights(&self, inputs: &[Shape]) -> Vec<WeightDecl> {
        let c = one(inputs, "bn").channels();
        [ParamKind::Weight, ParamKind::Bias, ParamKind::RunningMean, ParamKind::RunningVar]
            .into_iter()
            .map(|kind| weight(kind, vec![c]))
            .collect()
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

    /// `(x - mean) / sqrt(var + eps) * gamma + beta` per channel (feature).
    fn eval(&self, inputs: &[&Tensor], weights: &[&[f32]]) -> Tensor {
        let [gamma, beta, mean, var] = [weights[0], weights[1], weights[2], weights[3]];
        let eps = self.eps as f32;
        let f = |c: usize, v: f32| (v - mean[c]) / (var[c] + eps).sqrt() * gamma[c] + beta[c];
        match inputs[0] {
            Tensor::Map(a) => {
                let mut out = a.clone();
                for (c, mut plane) in out.axis_iter_mut(Axis(1)).enumerate() {
                    plane.mapv_inplace(|v| f(c, v));
                }
                Tensor::Map(out)
            }
            Tensor::Flat(a) => {
                let mut out = a.clone();
                for (c, mut col) in out.axis_iter_mut(Axis(1)).enumerate() {
                    col.mapv_inplace(|v| f(c, v));
                }
                Tensor::Flat(out)
            }
        }
    }
}
