//! `layernorm [eps E]`: layer normalisation over the channels at every pixel (ConvNeXt's
//! `LayerNorm2d`, and its permute / `LayerNorm(C)` / permute), or over the features of a vector
//! (`LayerNorm(F)`). Weight and bias [C].

use super::args::{OpSpec, Takes, float, opt, positive};
use super::support::one;
use super::{Category, Fusion, LayerOp, Op, ParamKind, Traits, WeightDecl, Window, weight};
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use ndarray::{ArrayViewMut1, Axis};

pub(super) const SPECS: &[OpSpec] = &[OpSpec {
    name: "layernorm",
    positional: &[],
    required: 0,
    options: &[opt("eps", Takes::Float)],
    example: "layernorm eps 1e-6",
    build: |p, errors| {
        let eps = match p.option("eps") {
            Some(v) => float("eps", "layernorm", v, errors).filter(|&e| positive(e, "eps", v.span, errors)),
            // PyTorch's `LayerNorm` default.
            None => Some(1e-5),
        };
        eps.map(|eps| Op::LayerNorm(LayerNorm { eps }))
    },
}];

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct LayerNorm {
    pub(crate) eps: f64,
}

impl LayerOp for LayerNorm {
    fn keyword(&self) -> &'static str {
        "layernorm"
    }

    fn infer(&self, _: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        Ok(one(inputs, "layernorm"))
    }

    fn weights(&self, inputs: &[Shape]) -> Vec<WeightDecl> {
        let c = one(inputs, "layernorm").channels();
        vec![weight(ParamKind::Weight, vec![c]), weight(ParamKind::Bias, vec![c])]
    }

    fn macs(&self, _: &[Shape], _: Shape) -> Option<u64> {
        Some(0)
    }

    fn window(&self, _: &[Shape]) -> Window {
        Window::Point
    }

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Alone
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Other, in_place: false, view: false, activation: None, factor: false }
    }

    /// `(x - mean) / sqrt(var + eps) * weight + bias` over the channels of each pixel, with the
    /// biased variance, in f64.
    fn eval(&self, inputs: &[&Tensor], weights: &[&[f32]]) -> Tensor {
        let (w, b) = (weights[0], weights[1]);
        let norm = |mut v: ArrayViewMut1<f32>| {
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (var + self.eps).sqrt();
            for (c, x) in v.iter_mut().enumerate() {
                *x = ((*x as f64 - mean) * inv * w[c] as f64 + b[c] as f64) as f32;
            }
        };
        match inputs[0] {
            Tensor::Map(a) => {
                let mut out = a.clone();
                for mut image in out.axis_iter_mut(Axis(0)) {
                    for mut row in image.axis_iter_mut(Axis(1)) {
                        row.axis_iter_mut(Axis(1)).for_each(&norm);
                    }
                }
                Tensor::Map(out)
            }
            Tensor::Flat(a) => {
                let mut out = a.clone();
                out.axis_iter_mut(Axis(0)).for_each(norm);
                Tensor::Flat(out)
            }
        }
    }
}
