//! `maxpool K`, `avgpool K`: max and average pooling with stride, padding and ceil mode, as
//! PyTorch's `MaxPool2d` and `AvgPool2d` (`count_include_pad=True`).

use super::args::{OpSpec, Parsed, Takes, opt, pair};
use super::support::{dims, kernel, needs_map, one, shrink_error};
use super::{Category, Fusion, LayerOp, Op, Traits, Window};
use crate::analysis::codes::Code;
use crate::analysis::diag::Diagnostic;
use crate::ir::geometry::{Shape, pool_out_len};
use crate::ir::graph::{Input, Node};
use crate::ir::tensor::Tensor;
use ndarray::Array4;

const POOL_OPTIONS: &[super::args::OptSpec] =
    &[opt("stride", Takes::Pair), opt("pad", Takes::Pair), opt("ceil", Takes::Flag)];

pub(super) const SPECS: &[OpSpec] = &[
    OpSpec {
        name: "maxpool",
        positional: &[("kernel", Takes::Pair)],
        required: 1,
        options: POOL_OPTIONS,
        example: "maxpool 3 stride 2 ceil",
        build: |p, errors| build_pool(PoolKind::Max, p, errors),
    },
    OpSpec {
        name: "avgpool",
        positional: &[("kernel", Takes::Pair)],
        required: 1,
        options: POOL_OPTIONS,
        example: "avgpool 2",
        build: |p, errors| build_pool(PoolKind::Avg, p, errors),
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PoolKind {
    Max,
    Avg,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Pool {
    pub(crate) kind: PoolKind,
    pub(crate) kernel: [u64; 2],
    pub(crate) stride: [u64; 2],
    pub(crate) pad: [u64; 2],
    pub(crate) ceil: bool,
}

fn build_pool(kind: PoolKind, p: &Parsed, errors: &mut Vec<Diagnostic>) -> Option<Op> {
    let name = if kind == PoolKind::Max { "maxpool" } else { "avgpool" };
    let kernel = p.pos(0).and_then(|v| pair("kernel", name, v, 1, errors));
    let stride = p.option("stride").and_then(|v| pair("stride", name, v, 1, errors));
    let pad = p.option("pad").and_then(|v| pair("padding", name, v, 0, errors));
    kernel.map(|kernel| {
        Op::Pool(Pool {
            kind,
            kernel,
            stride: stride.unwrap_or(kernel),
            pad: pad.unwrap_or([0, 0]),
            ceil: p.flag("ceil"),
        })
    })
}

/// A pool the conv epilogue can reduce in registers: non-overlapping windows that tile the
/// conv output exactly (a floor-mode pool may drop trailing rows; those are never computed).
pub(crate) fn pool_fusable(p: &Pool, input: Shape) -> bool {
    let (h, w) = input.spatial();
    let exact = |axis: usize, len: u64| !p.ceil || len % p.kernel[axis] == 0;
    p.kernel == p.stride
        && p.pad == [0, 0]
        && p.kernel[0] <= 3
        && p.kernel[1] <= 3
        && exact(0, h)
        && exact(1, w)
        && h >= p.kernel[0]
        && w >= p.kernel[1]
}

impl LayerOp for Pool {
    fn keyword(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "maxpool",
            PoolKind::Avg => "avgpool",
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("{} {}", self.keyword(), kernel(self.kernel));
        if self.stride != self.kernel {
            s += &format!("/{}", dims(self.stride));
        }
        if self.ceil {
            s += " ceil";
        }
        s
    }

    fn infer(&self, at: &Node, inputs: &[Shape], _: Input) -> Result<Shape, Option<Diagnostic>> {
        let (ch, h, w) = needs_map(at, one(inputs, "pool"))?;
        for axis in 0..2 {
            if self.pad[axis] * 2 > self.kernel[axis] {
                return Err(Some(
                    Diagnostic::error(
                        Code::PoolPadding,
                        at.origin.span,
                        format!(
                            "{} padding {} is more than half the kernel {}",
                            self.keyword(),
                            self.pad[axis],
                            self.kernel[axis]
                        ),
                    )
                    .with_label("PyTorch rejects this padding")
                    .with_help("pooling padding must be at most kernel / 2"),
                ));
            }
        }
        let oh = pool_out_len(h, self.kernel[0], self.stride[0], self.pad[0], self.ceil)
            .map_err(|e| Some(shrink_error(at, "height", h, e)))?;
        let ow = pool_out_len(w, self.kernel[1], self.stride[1], self.pad[1], self.ceil)
            .map_err(|e| Some(shrink_error(at, "width", w, e)))?;
        Ok(Shape::Map { c: ch, h: oh, w: ow })
    }

    weightless!();

    fn window(&self, _: &[Shape]) -> Window {
        Window::Kernel { extent: self.kernel, stride: self.stride }
    }

    fn fusion(&self, inputs: &[Shape]) -> Fusion {
        if pool_fusable(self, one(inputs, "pool")) { Fusion::Pool } else { Fusion::Alone }
    }

    fn traits(&self) -> Traits {
        Traits { category: Category::Pool, in_place: false, view: false, activation: None, factor: false }
    }

    fn eval(&self, inputs: &[&Tensor], _: &[&[f32]]) -> Tensor {
        Tensor::Map(pool2d(inputs[0].map("pool"), self))
    }
}

/// Max and average pooling with PyTorch's window rules: windows start at `o*s - p`; in ceil mode
/// the output size comes from `geometry::pool_out_len`; max ignores padding; average divides by
/// the window clipped to the padded input (`count_include_pad=True`).
fn pool2d(x: &Array4<f32>, p: &Pool) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let oh = pool_out_len(h as u64, p.kernel[0], p.stride[0], p.pad[0], p.ceil).expect("checked") as usize;
    let ow = pool_out_len(w as u64, p.kernel[1], p.stride[1], p.pad[1], p.ceil).expect("checked") as usize;
    let (kh, kw) = (p.kernel[0] as isize, p.kernel[1] as isize);
    let (sh, sw) = (p.stride[0] as isize, p.stride[1] as isize);
    let (ph, pw) = (p.pad[0] as isize, p.pad[1] as isize);
    let (hi, wi) = (h as isize, w as isize);
    let mut out = Array4::<f32>::zeros((n, c, oh, ow));
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let y0 = oy as isize * sh - ph;
                    let x0 = ox as isize * sw - pw;
                    let (y1, x1) = ((y0 + kh).min(hi + ph), (x0 + kw).min(wi + pw));
                    let pool_size = ((y1 - y0) * (x1 - x0)) as f32;
                    let (ya, xa, yb, xb) = (y0.max(0), x0.max(0), y1.min(hi), x1.min(wi));
                    let value = match p.kind {
                        PoolKind::Max => {
                            let mut m = f32::NEG_INFINITY;
                            for y in ya..yb {
                                for xx in xa..xb {
                                    m = m.max(x[[b, ch, y as usize, xx as usize]]);
                                }
                            }
                            m
                        }
                        PoolKind::Avg => {
                            let mut s = 0.0;
                            for y in ya..yb {
                                for xx in xa..xb {
                                    s += x[[b, ch, y as usize, xx as usize]];
                                }
                            }
                            s / pool_size
                        }
                    };
                    out[[b, ch, oy, ox]] = value;
                }
            }
        }
    }
    out
}
