//! `adaptive_avgpool HxW` and `gap`: average pooling to a fixed output size (PyTorch's
//! `AdaptiveAvgPool2d`); `gap` is the 1x1 case, global average pooling.

use super::args::{OpSpec, Takes, pair};
use super::support::{kernel, needs_map, one, whole_map};
use super::{Category, Fusion, LayerOp, Op, Traits, Window};
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::{Shape, adaptive_max_window, adaptive_window};
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use ndarray::Array4;

pub(super) const SPECS: &[OpSpec] = &[
    OpSpec {
        name: "adaptive_avgpool",
        positional: &[("output size", Takes::Pair)],
        required: 1,
        options: &[],
        example: "adaptive_avgpool 7x7",
        build: |p, errors| {
            p.pos(0)
                .and_then(|v| pair("output size", "adaptive_avgpool", v, 1, errors))
                .map(|out| Op::AdaptiveAvgPool(AdaptiveAvgPool { out }))
        },
    },
    OpSpec {
        name: "gap",
        positional: &[],
        required: 0,
        options: &[],
        example: "gap",
        build: |_, _| Some(Op::Gap(Gap)),
    },
];

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct AdaptiveAvgPool {
    pub(crate) out: [u64; 2],
}

/// Global average pooling: CxHxW -> Cx1x1 at any H, W.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Gap;

impl LayerOp for AdaptiveAvgPool {
    fn keyword(&self) -> &'static str {
        "adaptive_avgpool"
    }

    fn describe(&self) -> String {
        format!("adaptive_avgpool {}", kernel(self.out))
    }

    fn infer(&self, at: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        let (ch, _, _) = needs_map(at, one(inputs, "adaptive_avgpool"))?;
        Ok(Shape::Map { c: ch, h: self.out[0], w: self.out[1] })
    }

    weightless!();

    fn window(&self, inputs: &[Shape]) -> Window {
        let (ih, iw) = one(inputs, "adaptive_avgpool").spatial();
        Window::Kernel {
            extent: [adaptive_max_window(ih, self.out[0]), adaptive_max_window(iw, self.out[1])],
            stride: [(ih / self.out[0]).max(1), (iw / self.out[1]).max(1)],
        }
    }

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::Alone
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Pool, in_place: false, view: false, activation: None, factor: false }
    }

    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        Tensor::Map(adaptive_avg_pool(inputs[0].map("adaptive_avgpool"), self.out))
    }
}

impl LayerOp for Gap {
    fn keyword(&self) -> &'static str {
        "gap"
    }

    fn infer(&self, at: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        let (ch, _, _) = needs_map(at, one(inputs, "gap"))?;
        Ok(Shape::Map { c: ch, h: 1, w: 1 })
    }

    weightless!();

    fn window(&self, inputs: &[Shape]) -> Window {
        whole_map(inputs)
    }

    fn fusion(&self, _: &[Shape]) -> Fusion {
        Fusion::GlobalPool
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Pool, in_place: false, view: false, activation: None, factor: false }
    }

    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        Tensor::Map(adaptive_avg_pool(inputs[0].map("gap"), [1, 1]))
    }
}

/// Output `i` averages input `floor(i*L/O) .. ceil((i+1)*L/O)` (`geometry::adaptive_window`).
fn adaptive_avg_pool(x: &Array4<f32>, size: [u64; 2]) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let (oh, ow) = (size[0] as usize, size[1] as usize);
    let mut out = Array4::<f32>::zeros((n, c, oh, ow));
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..oh {
                let (y0, y1) = adaptive_window(oy as u64, h as u64, oh as u64);
                for ox in 0..ow {
                    let (x0, x1) = adaptive_window(ox as u64, w as u64, ow as u64);
                    let mut s = 0.0;
                    for y in y0..y1 {
                        for xx in x0..x1 {
                            s += x[[b, ch, y as usize, xx as usize]];
                        }
                    }
                    out[[b, ch, oy, ox]] = s / ((y1 - y0) * (x1 - x0)) as f32;
                }
            }
        }
    }
    out
}
