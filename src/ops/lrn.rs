//! `lrn N`: local response normalisation across channels (AlexNet, GoogLeNet as published),
//! PyTorch's `LocalResponseNorm(size, alpha, beta, k)`.

use super::args::{OpSpec, Takes, float, int_in_range, opt};
use super::support::{needs_map, one};
use super::{Category, Fusion, LayerOp, Op, Traits, Window};
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::Shape;
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use ndarray::Array4;

pub(super) const SPECS: &[OpSpec] = &[OpSpec {
    name: "lrn",
    positional: &[("size", Takes::Int)],
    required: 1,
    options: &[opt("alpha", Takes::Float), opt("beta", Takes::Float), opt("k", Takes::Float)],
    example: "lrn 5 alpha 0.0001 beta 0.75 k 2",
    build: |p, errors| {
        let size = p.pos(0).and_then(|v| int_in_range("size", "lrn", v, 1, errors));
        let get = |key: &str, default: f64, errors: &mut Vec<Diagnostic>| match p.option(key) {
            Some(v) => float(key, "lrn", v, errors),
            None => Some(default),
        };
        // PyTorch's LocalResponseNorm defaults.
        let alpha = get("alpha", 1e-4, errors);
        let beta = get("beta", 0.75, errors);
        let k = get("k", 1.0, errors);
        match (size, alpha, beta, k) {
            (Some(size), Some(alpha), Some(beta), Some(k)) => Some(Op::Lrn(Lrn { size, alpha, beta, k })),
            _ => None,
        }
    },
}];

/// PyTorch's `LocalResponseNorm(size, alpha, beta, k)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Lrn {
    pub(crate) size: u64,
    pub(crate) alpha: f64,
    pub(crate) beta: f64,
    pub(crate) k: f64,
}

impl LayerOp for Lrn {
    fn keyword(&self) -> &'static str {
        "lrn"
    }

    fn describe(&self) -> String {
        format!("lrn {}", self.size)
    }

    fn infer(&self, at: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        let input = one(inputs, "lrn");
        needs_map(at, input)?;
        Ok(input)
    }

    weightless!();

    fn window(&self, _: &[Shape]) -> Window {
        Window::Point
    }

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Alone
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Other, in_place: false, view: false, activation: None, factor: false }
    }

    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        Tensor::Map(lrn(inputs[0].map("lrn"), self))
    }
}

/// `b_c = a_c / (k + alpha/n * sum a_{c'}^2)^beta` over the channels `c - n/2 ..= c + (n-1)/2`
/// (zero beyond the edges; always divided by n).
fn lrn(x: &Array4<f32>, l: &Lrn) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let size = l.size as isize;
    let (before, after) = (size / 2, (size - 1) / 2);
    let (alpha, beta, k) = (l.alpha as f32, l.beta as f32, l.k as f32);
    let mut out = Array4::<f32>::zeros((n, c, h, w));
    for b in 0..n {
        for ch in 0..c as isize {
            for y in 0..h {
                for xx in 0..w {
                    let mut sum = 0.0;
                    for cc in (ch - before).max(0)..=(ch + after).min(c as isize - 1) {
                        let v = x[[b, cc as usize, y, xx]];
                        sum += v * v;
                    }
                    let div = (k + alpha * sum / size as f32).powf(beta);
                    out[[b, ch as usize, y, xx]] = x[[b, ch as usize, y, xx]] / div;
                }
            }
        }
    }
    out
}
